//! The "Run example" code lens and the command behind it (`loopc.runExample`): runs one
//! example of a document (or all of them) through the real engine on a worker thread, so the
//! server keeps answering while the model works, then answers the command with the results
//! and shows each outcome in the editor (`window/showMessage`, details in the log).

use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use lsp_server::{Message, Notification, RequestId, Response};
use lsp_types::notification::{LogMessage, Notification as _, ShowMessage};
use lsp_types::{CodeLens, Command, LogMessageParams, MessageType, ShowMessageParams};
use serde_json::{json, Value};

use super::analysis::Analysis;
use super::position::Positions;
use crate::compile::examples::{run_examples, ExampleRun};
use crate::model::progress::Progress;
use crate::runtime::{Engine, ProgramOptions};
use crate::syntax::ast::Item;

/// The command the lenses run: arguments `[uri, example name]` (without a name: every example).
pub const RUN_EXAMPLE: &str = "loopc.runExample";

/// A lens over each example ("Run example") and over the header ("Run all N examples").
pub fn lenses(a: &Analysis, uri: &str, positions: &Positions<'_>) -> Vec<CodeLens> {
    let Some(file) = &a.file else { return Vec::new() };
    let lens = |span, title: String, args: Vec<Value>| CodeLens {
        range: positions.range(span),
        command: Some(Command { title, command: RUN_EXAMPLE.into(), arguments: Some(args) }),
        data: None,
    };
    let mut out = Vec::new();
    let mut count = 0;
    for item in &file.items {
        if let Item::Example(e) = item {
            count += 1;
            out.push(lens(e.name.span, "▶ Run example".into(), vec![json!(uri), json!(e.name.name)]));
        }
    }
    if count > 1 {
        out.insert(0, lens(file.header.name.span, format!("▶ Run all {count} examples"), vec![json!(uri)]));
    }
    out
}

/// Runs examples off the server's thread; one engine (and its loaded models) for all runs.
#[derive(Clone)]
pub struct Runner {
    sender: Sender<Message>,
    engine: Arc<Mutex<Option<Engine>>>,
}

impl Runner {
    /// A runner that answers and reports through `sender`.
    pub fn new(sender: Sender<Message>) -> Runner {
        Runner { sender, engine: Arc::new(Mutex::new(None)) }
    }

    /// Starts running the example named `name` (every example when `None`) of `text` (from
    /// the document `source_name`) and returns at once; request `id` is answered when done.
    pub fn start(&self, id: RequestId, source_name: String, text: String, name: Option<String>) {
        let runner = self.clone();
        let spawned = std::thread::Builder::new().name("loopc-example".into()).spawn(move || {
            let response = match runner.run(&source_name, &text, name.as_deref()) {
                Ok(runs) => {
                    runner.report(&runs);
                    Response::new_ok(id, runs.iter().map(run_json).collect::<Vec<_>>())
                }
                Err(message) => {
                    runner.show(MessageType::ERROR, message.clone());
                    Response::new_err(id, lsp_server::ErrorCode::RequestFailed as i32, message)
                }
            };
            let _ = runner.sender.send(Message::Response(response));
        });
        if let Err(e) = spawned {
            self.show(MessageType::ERROR, format!("cannot start a thread to run the example: {e}"));
        }
    }

    fn engine(&self) -> Result<Engine, String> {
        let mut slot = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(engine) = slot.as_ref() {
            return Ok(engine.clone());
        }
        let progress = Arc::new(LogProgress { sender: self.sender.clone() });
        let engine = Engine::builder().progress(progress).build().map_err(|e| format!("cannot start the engine: {e}"))?;
        *slot = Some(engine.clone());
        Ok(engine)
    }

    fn run(&self, source_name: &str, text: &str, name: Option<&str>) -> Result<Vec<ExampleRun>, String> {
        let checked = crate::graph::check_text(text);
        let Some(dag) = checked.dag else {
            return Err(format!("`{source_name}` has errors; fix them to run its examples"));
        };
        let examples: Vec<_> = dag.examples().iter().filter(|e| name.is_none_or(|n| e.name == n)).cloned().collect();
        if examples.is_empty() {
            return Err(match name {
                Some(n) => format!("`{source_name}` has no example `{n}`"),
                None => format!("`{source_name}` has no examples"),
            });
        }
        let engine = self.engine()?;
        let program = engine.load_source(source_name, text, ProgramOptions::default()).map_err(|e| format!("cannot load the program: {e}"))?;
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(|e| format!("cannot start the async runtime: {e}"))?;
        Ok(rt.block_on(run_examples(&program, &examples, 1, &|_| {})))
    }

    /// Shows each outcome, with its diff or error in the log.
    fn report(&self, runs: &[ExampleRun]) {
        for r in runs {
            let outputs = r.outputs.as_ref().map(|o| Value::Object(o.clone()).to_string());
            let (kind, message) = match (&outputs, r.passed()) {
                (Ok(out), true) => (MessageType::INFO, format!("✓ example `{}` passed in {:.1} s: {out}", r.name, r.seconds)),
                (Ok(out), false) => {
                    (MessageType::WARNING, format!("✗ example `{}` failed ({} differ): the outputs are {out}", r.name, r.mismatched.join(", ")))
                }
                (Err(e), _) => (MessageType::ERROR, format!("✗ example `{}` could not run: {e}", r.name)),
            };
            if let Some(diff) = r.diff() {
                self.log(format!("example `{}`:\n{diff}", r.name));
            }
            self.show(kind, message);
        }
        if runs.len() > 1 {
            let passed = runs.iter().filter(|r| r.passed()).count();
            self.show(if passed == runs.len() { MessageType::INFO } else { MessageType::WARNING }, format!("{passed} of {} examples passed", runs.len()));
        }
    }

    fn show(&self, typ: MessageType, message: String) {
        let params = ShowMessageParams { typ, message };
        let _ = self.sender.send(Message::Notification(Notification::new(ShowMessage::METHOD.into(), params)));
    }

    fn log(&self, message: String) {
        log(&self.sender, message);
    }
}

fn log(sender: &Sender<Message>, message: String) {
    let params = LogMessageParams { typ: MessageType::LOG, message };
    let _ = sender.send(Message::Notification(Notification::new(LogMessage::METHOD.into(), params)));
}

/// One run as the command's answer.
fn run_json(r: &ExampleRun) -> Value {
    json!({
        "name": r.name,
        "passed": r.passed(),
        "held_out": r.held_out,
        "inputs": r.inputs,
        "expected": r.expected,
        "outputs": r.outputs.as_ref().ok(),
        "error": r.outputs.as_ref().err(),
        "mismatched": r.mismatched,
        "diff": r.diff(),
        "seconds": r.seconds,
    })
}

/// Model provisioning and loading, reported to the editor's log.
struct LogProgress {
    sender: Sender<Message>,
}

impl Progress for LogProgress {
    fn start(&self, message: &str, _: Option<u64>) {
        log(&self.sender, format!("{message}…"));
    }

    fn set(&self, _: u64) {}

    fn finish(&self, message: &str) {
        log(&self.sender, message.to_string());
    }
}
