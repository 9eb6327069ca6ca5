//! `loopc bench lsp`: how long the language server takes to re-check a program after an edit,
//! as an editor sees it: from sending `didChange` to receiving the new diagnostics, through
//! the real server on an in-memory connection. Each edit alternately breaks and repairs a
//! reference, so every other check reports an error.

use std::time::{Duration, Instant};

use lsp_server::{Connection, Message, Notification, Request, RequestId};
use serde_json::json;

use super::args::BenchLspArgs;
use super::Outcome;

/// A program of about `lines` lines: signatures, multi-line steps and examples, repeated.
pub fn generated_program(lines: usize) -> String {
    let mut src = String::from("program generated \"A generated program for the language server benchmark\"\n\n");
    src.push_str(
        "input ticket: text \"the customer's message\"\ninput urgent: bool\noutput category: label(billing, bug, account, other)\noutput reply: text\n\n",
    );
    src.push_str("model default = onnx(\"smollm2-135m-instruct\") { temperature: 0.0, max_tokens: 96 }\n\n");
    let mut i = 0usize;
    while src.lines().count() + 12 < lines {
        let prev = if i == 0 { "input.ticket".to_string() } else { format!("s{}.summary", i - 1) };
        src.push_str(&format!(
            "signature Sig{i} \"Summarize the ticket, part {i}.\" {{\n  in ticket: text \"the ticket\"\n  in notes: text\n  out summary: text \"a short summary\"\n}}\n\n\
             step s{i} = predict Sig{i} {{\n  ticket: input.ticket,\n  notes: {prev},\n}}\n\n"
        ));
        i += 1;
    }
    let last = i.saturating_sub(1);
    src.push_str(
        "signature Classify \"Classify the ticket.\" {\n  in ticket: text\n  in summary: text\n  out category: label(billing, bug, account, other)\n}\n\n",
    );
    src.push_str(&format!("step classify = predict Classify {{ ticket: input.ticket, summary: s{last}.summary }}\n\n"));
    src.push_str(&format!("return {{ category: classify.category, reply: s{last}.summary }}\n\n"));
    src.push_str("metric accuracy = exact(output.category, example.category)\n");
    src.push_str("example refund {\n  input { ticket: \"I was charged twice\", urgent: true }\n  output { category: billing }\n}\n");
    src
}

/// Runs `loopc bench lsp`.
pub fn run(args: &BenchLspArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.edits > 0, "--edits must be at least 1");
    let source = generated_program(args.lines);
    let line_count = source.lines().count();
    // The edit: `s0.summary` in `s1`'s bindings becomes `s0.summaryx` and back.
    let target = source.find("notes: s0.summary").map(|i| i + "notes: s0.summary".len()).ok_or_else(|| anyhow::anyhow!("--lines is too small for an edit"))?;
    let before = &source[..target];
    let line = before.matches('\n').count();
    let character = target - before.rfind('\n').map_or(0, |i| i + 1);

    let (server, client) = Connection::memory();
    let handle = std::thread::spawn(move || loopc::lsp::serve(server));
    let uri = "file:///bench/generated.loop";
    let init = json!({ "capabilities": { "general": { "positionEncodings": ["utf-8"] } } });
    client.sender.send(Message::Request(Request::new(RequestId::from(1), "initialize".into(), init)))?;
    wait(&client, |m| matches!(m, Message::Response(_)))?;
    notify(&client, "initialized", json!({}))?;
    notify(&client, "textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "loop", "version": 0, "text": source } }))?;
    wait(&client, |m| is_diagnostics(m, 0))?;

    let mut times = Vec::with_capacity(args.edits);
    let mut analysis_times = Vec::with_capacity(args.edits);
    let mut text = source.clone();
    for version in 1..=args.edits as i64 {
        let (range, insert) = if version % 2 == 1 {
            (json!({ "start": { "line": line, "character": character }, "end": { "line": line, "character": character } }), "x")
        } else {
            (json!({ "start": { "line": line, "character": character }, "end": { "line": line, "character": character + 1 } }), "")
        };
        if insert.is_empty() {
            text.remove(target);
        } else {
            text.insert_str(target, insert);
        }
        let change = json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [{ "range": range, "text": insert }] });
        let t = Instant::now();
        notify(&client, "textDocument/didChange", change)?;
        wait(&client, |m| is_diagnostics(m, version))?;
        times.push(t.elapsed());
        // The same check without the protocol: what the server itself spends.
        let t = Instant::now();
        let a = loopc::lsp::Analysis::new(text.clone());
        analysis_times.push(t.elapsed());
        anyhow::ensure!(a.diagnostics.is_empty() == (version % 2 == 0), "edit {version} did not break and repair as planned");
    }
    client.sender.send(Message::Request(Request::new(RequestId::from(2), "shutdown".into(), json!(null))))?;
    wait(&client, |m| matches!(m, Message::Response(_)))?;
    notify(&client, "exit", json!(null))?;
    handle.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))??;

    let (p50, p95, max) = percentiles(&mut times);
    let (a50, a95, _) = percentiles(&mut analysis_times);
    if args.json {
        let figures = json!({
            "lines": line_count, "bytes": source.len(), "edits": args.edits,
            "recheck_p50_ms": ms(p50), "recheck_p95_ms": ms(p95), "recheck_max_ms": ms(max),
            "analysis_p50_ms": ms(a50), "analysis_p95_ms": ms(a95),
        });
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!("language server re-check after an edit: {line_count} lines ({} bytes), {} edits", source.len(), args.edits);
        println!("  didChange → diagnostics   p50 {:>7.2} ms   p95 {:>7.2} ms   max {:>7.2} ms", ms(p50), ms(p95), ms(max));
        println!("  parse + check + index     p50 {:>7.2} ms   p95 {:>7.2} ms", ms(a50), ms(a95));
    }
    Ok(Outcome::Success)
}

fn notify(client: &Connection, method: &str, params: serde_json::Value) -> anyhow::Result<()> {
    client.sender.send(Message::Notification(Notification::new(method.into(), params)))?;
    Ok(())
}

fn is_diagnostics(m: &Message, version: i64) -> bool {
    matches!(m, Message::Notification(n) if n.method == "textDocument/publishDiagnostics" && n.params["version"] == version)
}

/// Reads messages until one satisfies `done` (the server runs in this process: a minute is
/// far more than any answer takes, and only guards against a hung server).
fn wait(client: &Connection, done: impl Fn(&Message) -> bool) -> anyhow::Result<()> {
    loop {
        let m = client.receiver.recv_timeout(Duration::from_secs(60)).map_err(|e| anyhow::anyhow!("the server did not answer: {e}"))?;
        if done(&m) {
            return Ok(());
        }
    }
}

fn percentiles(times: &mut [Duration]) -> (Duration, Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95), at(1.0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_program_has_the_lines_asked_for_and_checks() {
        let src = generated_program(500);
        let lines = src.lines().count();
        assert!((480..=520).contains(&lines), "{lines}");
        let checked = loopc::graph::check_text(&src);
        assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    }
}
