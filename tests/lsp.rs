//! `loopc lsp` driven as an editor drives it: the real binary over JSON-RPC on its standard
//! input and output. Initialize (UTF-16 positions, the protocol's default), open a file, edit
//! it into an error and receive diagnostics with the right range, take the quick fix, hover,
//! go to definition, complete, rename (and be refused a colliding name), format as
//! `loopc fmt` does, list symbols and semantic tokens, run an example through its code lens
//! on a tiny model, shut down and exit. Every byte the server writes must parse as a
//! protocol message: anything else on standard output would fail the read.

use std::io::{BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lsp_server::{Message, Notification, Request, RequestId, Response};
use serde_json::{json, Value};

/// A client of one `loopc lsp` process.
struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: mpsc::Receiver<Message>,
    next_id: i32,
    /// Notifications that arrived while waiting for something else.
    notes: Vec<Notification>,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loopc"))
            .args(["lsp", "--stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                match Message::read(&mut reader) {
                    Ok(Some(m)) => {
                        if tx.send(m).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => panic!("the server wrote something that is not a protocol message: {e}"),
                }
            }
        });
        Client { child, stdin, messages: rx, next_id: 0, notes: Vec::new() }
    }

    fn send(&mut self, m: Message) {
        m.write(&mut self.stdin).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(Message::Notification(Notification::new(method.into(), params)));
    }

    fn recv(&mut self, wait: Duration) -> Message {
        self.messages.recv_timeout(wait).unwrap_or_else(|e| panic!("no message from the server within {wait:?}: {e}"))
    }

    /// Sends a request and returns its response, keeping notifications that come before it.
    fn request_within(&mut self, method: &str, params: Value, wait: Duration) -> Response {
        self.next_id += 1;
        let id = RequestId::from(self.next_id);
        self.send(Message::Request(Request::new(id.clone(), method.into(), params)));
        loop {
            match self.recv(wait) {
                Message::Response(r) if r.id == id => return r,
                Message::Notification(n) => self.notes.push(n),
                other => panic!("unexpected message: {other:?}"),
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let r = self.request_within(method, params, Duration::from_secs(30));
        assert!(r.error.is_none(), "`{method}` failed: {:?}", r.error);
        r.result.unwrap_or(Value::Null)
    }

    /// The next `publishDiagnostics` for `version`.
    fn diagnostics(&mut self, version: i32) -> Vec<Value> {
        if let Some(i) = self.notes.iter().position(|n| is_diagnostics(n, version)) {
            let n = self.notes.remove(i);
            return n.params["diagnostics"].as_array().cloned().unwrap_or_default();
        }
        loop {
            match self.recv(Duration::from_secs(30)) {
                Message::Notification(n) if is_diagnostics(&n, version) => return n.params["diagnostics"].as_array().cloned().unwrap_or_default(),
                Message::Notification(n) => self.notes.push(n),
                other => panic!("unexpected message: {other:?}"),
            }
        }
    }
}

fn is_diagnostics(n: &Notification, version: i32) -> bool {
    n.method == "textDocument/publishDiagnostics" && n.params["version"] == version
}

/// The 0-based line and UTF-16 column of the `nth` match of `needle` in `text`, plus `into` chars.
fn pos(text: &str, needle: &str, nth: usize, into: usize) -> Value {
    let at = text.match_indices(needle).nth(nth).unwrap_or_else(|| panic!("`{needle}` #{nth} not in the text")).0;
    let before = &text[..at];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column: usize = text[line_start..at].encode_utf16().count() + into;
    json!({ "line": line, "character": column })
}

/// A program whose description holds characters that take two UTF-16 units and four bytes,
/// before the place the test breaks, so a byte or character column would be wrong.
fn program(model: &std::path::Path) -> String {
    format!(
        "program triage \"Route tickets 🚀 café\"\n\n\
         input ticket: text \"the customer's message\"\n\
         output mood: label(happy, sad, calm)\n\n\
         model default = onnx(\"{}\") {{ max_tokens: 8 }}\n\n\
         signature Classify \"Say the mood 🚀.\" {{\n  in note: text\n  in ticket: text\n  out mood: label(happy, sad, calm)\n}}\n\n\
         step classify = predict Classify {{ note: \"é🚀 be brief\", ticket: input.ticket }}\n\n\
         return {{ mood: classify.mood }} // 🚀 é\n\n\
         example cheerful {{\n  input {{ ticket: \"what a lovely day\" }}\n  output {{ mood: happy }}\n}}\n",
        model.display()
    )
}

#[test]
fn an_editor_session_over_json_rpc_gets_every_answer_it_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 7).unwrap();
    let path = dir.path().join("triage.loop");
    let text = program(&model);
    std::fs::write(&path, &text).unwrap();
    let uri = format!("file://{}", path.display());

    let mut c = Client::start();
    // No `positionEncodings`: the server must count columns in UTF-16.
    let init = c.request("initialize", json!({ "processId": null, "rootUri": null, "capabilities": {} }));
    assert_eq!(init["capabilities"]["positionEncoding"], "utf-16");
    assert_eq!(init["serverInfo"]["name"], "loopc");
    c.notify("initialized", json!({}));
    c.notify("textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "loop", "version": 1, "text": text } }));
    assert_eq!(c.diagnostics(1), Vec::<Value>::new(), "the program checks");

    // Misspell the input a step reads, after wide characters on the same line (an incremental
    // edit inserting one character).
    let at = pos(&text, "input.ticket", 0, 7);
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "range": { "start": at, "end": at }, "text": "z" }] }),
    );
    let diags = c.diagnostics(2);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d["code"], "unknown-name");
    assert_eq!(d["severity"], 1);
    assert!(d["message"].as_str().unwrap().contains("the program has no input `tzicket`"), "{d}");
    assert!(d["message"].as_str().unwrap().contains("help: did you mean `ticket`?"), "{d}");
    let start = pos(&text, "input.ticket", 0, 6);
    assert_eq!(d["range"]["start"], start, "the range starts at the name, in UTF-16 columns");
    assert_eq!(d["range"]["end"]["character"], start["character"].as_u64().unwrap() + "tzicket".len() as u64);

    // The quick fix the checker knows.
    let actions = c.request("textDocument/codeAction", json!({ "textDocument": { "uri": uri }, "range": d["range"], "context": { "diagnostics": [d] } }));
    let fix = &actions[0];
    assert_eq!(fix["title"], "Change `tzicket` to `ticket`");
    assert_eq!(fix["kind"], "quickfix");
    let edit = &fix["edit"]["changes"][&uri][0];
    assert_eq!(edit["newText"], "ticket");
    // Apply it as the editor would.
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 3 }, "contentChanges": [{ "range": edit["range"], "text": "ticket" }] }),
    );
    assert_eq!(c.diagnostics(3), Vec::<Value>::new(), "the fix repairs the program");

    // Hover: an input's type and description; a model's resolved settings.
    let hover = c.request("textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": pos(&text, "input.ticket", 0, 8) }));
    let md = hover["contents"]["value"].as_str().unwrap();
    assert!(md.contains("input ticket: text") && md.contains("the customer's message"), "{md}");
    assert_eq!(hover["range"]["start"], pos(&text, "input.ticket", 0, 6));
    let hover = c.request("textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": pos(&text, "model default", 0, 7) }));
    let md = hover["contents"]["value"].as_str().unwrap();
    assert!(md.contains("| max_tokens | 8 |") && md.contains("| temperature | 0 (greedy) (default) |"), "{md}");

    // Go to definition: from `classify.mood` to the step.
    let def = c.request("textDocument/definition", json!({ "textDocument": { "uri": uri }, "position": pos(&text, "classify.mood", 0, 2) }));
    assert_eq!(def["uri"], uri.as_str());
    assert_eq!(def["range"]["start"], pos(&text, "classify = predict", 0, 0));

    // The other places the name under the cursor is written.
    let marks = c.request("textDocument/documentHighlight", json!({ "textDocument": { "uri": uri }, "position": pos(&text, "classify.mood", 0, 2) }));
    let marks = marks.as_array().unwrap();
    assert_eq!(marks.len(), 2, "{marks:?}");
    assert_eq!(marks[0]["kind"], 3, "the declaration is where the name is written");

    // Completion: the members of `input.`, and the labels of an example's output.
    let items = c.request("textDocument/completion", json!({ "textDocument": { "uri": uri }, "position": pos(&text, "input.ticket", 0, 6) }));
    let labels: Vec<&str> = items.as_array().unwrap().iter().filter_map(|i| i["label"].as_str()).collect();
    assert_eq!(labels, ["ticket"]);
    let items = c.request("textDocument/completion", json!({ "textDocument": { "uri": uri }, "position": pos(&text, "mood: happy", 0, 6) }));
    let labels: Vec<&str> = items.as_array().unwrap().iter().filter_map(|i| i["label"].as_str()).collect();
    assert_eq!(labels, ["happy", "sad", "calm"]);

    // Rename the step: every use changes; a name another step has is refused.
    let refused = c.request_within(
        "textDocument/rename",
        json!({ "textDocument": { "uri": uri }, "position": pos(&text, "classify =", 0, 1), "newName": "input" }),
        Duration::from_secs(30),
    );
    assert!(refused.error.as_ref().is_some_and(|e| e.message.contains("reserved")), "{refused:?}");
    let edit = c.request("textDocument/rename", json!({ "textDocument": { "uri": uri }, "position": pos(&text, "classify =", 0, 1), "newName": "route" }));
    let edits = edit["changes"][&uri].as_array().unwrap();
    assert_eq!(edits.len(), 2, "the declaration and `classify.mood`: {edits:?}");
    assert!(edits.iter().all(|e| e["newText"] == "route"));

    // Formatting gives exactly what `loopc fmt` writes.
    let messy = "program  messy\ninput t:text\noutput o : text\nreturn{o:input.t}\n";
    let messy_uri = format!("file://{}", dir.path().join("messy.loop").display());
    c.notify("textDocument/didOpen", json!({ "textDocument": { "uri": messy_uri, "languageId": "loop", "version": 1, "text": messy } }));
    c.diagnostics(1);
    let edits = c.request("textDocument/formatting", json!({ "textDocument": { "uri": messy_uri }, "options": { "tabSize": 2, "insertSpaces": true } }));
    let formatted = edits[0]["newText"].as_str().unwrap();
    let mut fmt = Command::new(env!("CARGO_BIN_EXE_loopc")).args(["fmt", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    fmt.stdin.take().unwrap().write_all(messy.as_bytes()).unwrap();
    let out = fmt.wait_with_output().unwrap();
    assert_eq!(formatted, String::from_utf8(out.stdout).unwrap());

    // The outline and semantic tokens.
    let symbols = c.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri } }));
    let names: Vec<&str> = symbols.as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(names.contains(&"Classify") && names.contains(&"classify") && names.contains(&"cheerful"), "{names:?}");
    let tokens = c.request("textDocument/semanticTokens/full", json!({ "textDocument": { "uri": uri } }));
    assert!(tokens["data"].as_array().is_some_and(|d| d.len() > 100 && d.len() % 5 == 0));

    // The example's code lens runs it on the tiny model; the answer comes when it is done.
    let lenses = c.request("textDocument/codeLens", json!({ "textDocument": { "uri": uri } }));
    let lens = &lenses[0];
    assert_eq!(lens["command"]["command"], "loopc.runExample");
    assert_eq!(lens["range"]["start"], pos(&text, "cheerful", 0, 0));
    let run = c.request_within(
        "workspace/executeCommand",
        json!({ "command": "loopc.runExample", "arguments": lens["command"]["arguments"] }),
        Duration::from_secs(300),
    );
    assert!(run.error.is_none(), "{run:?}");
    let result = &run.result.unwrap()[0];
    assert_eq!(result["name"], "cheerful");
    let mood = result["outputs"]["mood"].as_str().unwrap_or_else(|| panic!("the example ran: {result}"));
    assert!(["happy", "sad", "calm"].contains(&mood), "{result}");
    assert_eq!(result["passed"], mood == "happy", "{result}");
    let shown = c.notes.iter().find(|n| n.method == "window/showMessage").map(|n| n.params["message"].to_string()).unwrap_or_default();
    assert!(shown.contains("example `cheerful`"), "the outcome is shown in the editor: {shown}");

    // Shut down and exit: the process ends with 0.
    assert_eq!(c.request("shutdown", Value::Null), Value::Null);
    c.notify("exit", Value::Null);
    let status = c.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn an_editor_that_offers_utf8_positions_gets_them() {
    let mut c = Client::start();
    let init = c.request("initialize", json!({ "capabilities": { "general": { "positionEncodings": ["utf-16", "utf-8"] } } }));
    assert_eq!(init["capabilities"]["positionEncoding"], "utf-8");
    c.notify("initialized", json!({}));
    let text = "program p \"é🚀\"\ninput t: text\noutput o: text\nreturn { o: \"é🚀\" o2: x }\n";
    c.notify("textDocument/didOpen", json!({ "textDocument": { "uri": "file:///x.loop", "languageId": "loop", "version": 1, "text": text } }));
    let diags = c.diagnostics(1);
    assert_eq!(diags.len(), 1, "{diags:?}");
    // The syntax error at `o2` stands after 2 + 4 bytes of wide characters on its line.
    let line = text.lines().nth(3).unwrap();
    assert_eq!(diags[0]["range"]["start"], json!({ "line": 3, "character": line.find("o2").unwrap() }));
    assert_eq!(c.request("shutdown", Value::Null), Value::Null);
    c.notify("exit", Value::Null);
    assert!(c.child.wait().unwrap().success());
}
