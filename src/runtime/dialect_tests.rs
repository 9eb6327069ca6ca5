//! Structured output through OpenAI-compatible servers that speak different dialects: an
//! in-process double refuses what each real server refuses (llama-cpp-python's answers a
//! `json_schema` response format with 422, a plain server takes no structure at all), and the
//! backend must find the dialect each endpoint takes, remember it, and fall back to tolerant
//! parsing with every repair in the trace. A run whose value still doesn't fit fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;

use super::backend::{AnswerShape, Backend, OpenAiBackend, PoolOptions, StructuredOutput};
use super::executor::{Executor, RunError, RunOptions};
use super::value::Repair;

/// Which real server the double behaves like.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// OpenAI, llama.cpp's llama-server: `json_schema` accepted.
    OpenAi,
    /// llama-cpp-python's server: `json_schema` refused with 422, `json_object` + schema taken.
    LlamaCppPython,
    /// The same server as it answered here (0.3.36 with a recent FastAPI): the validation error
    /// comes back as a 500 naming the field.
    LlamaCppPython500,
    /// vLLM with `response_format` switched off: only `guided_json` / `guided_choice`.
    Guided,
    /// No structured output at all: any such field is a 400.
    Plain,
}

/// A double of `kind` answering every accepted request with `answer(body)`; records bodies.
async fn double(kind: Kind, answer: fn(&Value) -> String) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let req = super::test_http::read_request(&mut sock).await;
                let body: Value = req.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
                log.lock().expect("log").push(body.clone());
                let format = body["response_format"]["type"].as_str();
                let guided = body.get("guided_json").is_some() || body.get("guided_choice").is_some();
                let refused = match kind {
                    Kind::OpenAi => guided || format == Some("json_object"),
                    Kind::LlamaCppPython | Kind::LlamaCppPython500 => guided || format == Some("json_schema"),
                    Kind::Guided => format.is_some(),
                    Kind::Plain => format.is_some() || guided,
                };
                let (status, text) = if refused {
                    let detail = "1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}";
                    match kind {
                        Kind::LlamaCppPython500 => (500, json!({"error": {"message": detail, "type": "internal_server_error"}}).to_string()),
                        _ => (422, json!({"detail": [{"msg": "Input should be 'text' or 'json_object'"}]}).to_string()),
                    }
                } else {
                    let content = answer(&body);
                    (
                        200,
                        json!({"choices": [{"message": {"role": "assistant", "content": content}}], "usage": {"prompt_tokens": 20, "completion_tokens": 5}})
                            .to_string(),
                    )
                };
                let resp =
                    format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}/v1"), seen)
}

const EMOTION: &str = "program p\ninput tweet: text\noutput emotion: label(anger, joy, sadness)\n\
signature S \"Classify.\" { in tweet: text out emotion: label(anger, joy, sadness) }\n\
step s = predict S { tweet: input.tweet }\nreturn { emotion: s.emotion }\n";

const CONTACTS: &str = "program p\ninput email: text\noutput to: list<text(email)>\noutput urgent: bool\n\
signature S \"Extract.\" { in email: text out to: list<text(email)> out urgent: bool }\n\
step s = predict S { email: input.email }\nreturn { to: s.to, urgent: s.urgent }\n";

fn executor(src: &str, url: &str, structured_output: StructuredOutput) -> Executor {
    let file = crate::syntax::parse(src).expect("parses");
    let lowered = crate::graph::lower(&file);
    let dag = lowered.dag.expect("checks");
    let options = PoolOptions { retries: 0, structured_output, ..PoolOptions::default() };
    let backend: Arc<dyn Backend> = Arc::new(OpenAiBackend::new(&[url.to_string()], "m", options).expect("backend"));
    let backends = dag.models().iter().map(|_| backend.clone()).collect();
    Executor::new(Arc::new(dag), backends, HashMap::new(), RunOptions::default())
}

fn inputs(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn joy(_: &Value) -> String {
    "{\"emotion\": \"joy\"}".into()
}

#[tokio::test]
async fn a_server_that_refuses_json_schema_is_asked_in_its_own_dialect_from_then_on() {
    let (url, seen) = double(Kind::LlamaCppPython, joy).await;
    let ex = executor(EMOTION, &url, StructuredOutput::Auto);
    for _ in 0..3 {
        let (out, trace) = ex.run(inputs(json!({"tweet": "what a day!"}))).await;
        assert_eq!(out.expect("runs").get("emotion"), Some(&json!("joy")));
        assert_eq!(trace.steps[0].structure.as_deref(), Some("json_object"));
        // The trace shows the messages the endpoint was sent, in the JSON template.
        assert!(trace.steps[0].prompt.contains("Answer with one JSON object"), "{}", trace.steps[0].prompt);
    }
    let bodies = seen.lock().expect("log").clone();
    // One refusal, then every request in the dialect it takes.
    let formats: Vec<&str> = bodies.iter().map(|b| b["response_format"]["type"].as_str().unwrap_or("-")).collect();
    assert_eq!(formats, ["json_schema", "json_object", "json_object", "json_object"]);
    let schema = &bodies[1]["response_format"]["schema"];
    assert_eq!(schema["properties"]["emotion"]["enum"], json!(["anger", "joy", "sadness"]), "labels go as an enum");
    assert_eq!(schema["required"], json!(["emotion"]));
    // The prompt asks for what the schema enforces: a JSON object.
    let system = bodies[1]["messages"][0]["content"].as_str().unwrap_or("");
    assert!(system.contains("Answer with one JSON object"), "{system}");
}

#[tokio::test]
async fn a_refusal_that_comes_back_as_a_server_error_naming_the_field_is_still_a_refusal() {
    let (url, seen) = double(Kind::LlamaCppPython500, joy).await;
    let ex = executor(EMOTION, &url, StructuredOutput::Auto);
    let (out, trace) = ex.run(inputs(json!({"tweet": "x"}))).await;
    assert_eq!(out.expect("runs").get("emotion"), Some(&json!("joy")));
    assert_eq!(trace.steps[0].structure.as_deref(), Some("json_object"));
    assert_eq!(seen.lock().expect("log").len(), 2, "no retries spent on the refusal (retries are 0 here)");
}

#[tokio::test]
async fn each_dialect_is_spoken_to_the_server_that_takes_it() {
    let (url, seen) = double(Kind::OpenAi, joy).await;
    let (out, _) = executor(EMOTION, &url, StructuredOutput::Auto).run(inputs(json!({"tweet": "x"}))).await;
    assert!(out.is_ok());
    let body = seen.lock().expect("log")[0].clone();
    assert_eq!(body["response_format"]["json_schema"]["strict"], json!(true));

    fn bare(_: &Value) -> String {
        "sadness".into()
    }
    let (url, seen) = double(Kind::Guided, bare).await;
    let (out, trace) = executor(EMOTION, &url, StructuredOutput::Auto).run(inputs(json!({"tweet": "x"}))).await;
    assert_eq!(out.expect("runs").get("emotion"), Some(&json!("sadness")));
    assert_eq!(trace.steps[0].structure.as_deref(), Some("guided_choice"));
    let bodies = seen.lock().expect("log").clone();
    assert_eq!(bodies.len(), 3, "json_schema and json_object refused, then guided");
    assert_eq!(bodies[2]["guided_choice"], json!(["anger", "joy", "sadness"]));
}

#[tokio::test]
async fn with_no_dialect_accepted_answers_are_parsed_and_every_repair_is_recorded() {
    fn sloppy(_: &Value) -> String {
        "Sure! Here you go:\n```json\n{'to': ['ann@example.com',], 'urgent': true}\n```".into()
    }
    let (url, seen) = double(Kind::Plain, sloppy).await;
    let ex = executor(CONTACTS, &url, StructuredOutput::Auto);
    let (out, trace) = ex.run(inputs(json!({"email": "write to ann@example.com by Friday"}))).await;
    assert_eq!(trace.steps[0].error, None);
    let out = out.expect("parsed");
    assert_eq!(Value::Object(out), json!({"to": ["ann@example.com"], "urgent": true}));
    let step = &trace.steps[0];
    assert_eq!(step.structure.as_deref(), Some("parsed (the endpoint took no structured-output dialect)"));
    let repairs: Vec<Repair> = step.repairs.iter().map(|r| r.repair).collect();
    for want in [Repair::CodeFence, Repair::SingleQuotes, Repair::TrailingComma] {
        assert!(repairs.contains(&want), "{want:?} in {repairs:?}");
    }
    // Four requests: three dialects refused once each, then the plain one.
    assert_eq!(seen.lock().expect("log").len(), 4);
    // The next run asks in plain text at once.
    ex.run(inputs(json!({"email": "x"}))).await.0.expect("runs");
    assert_eq!(seen.lock().expect("log").len(), 5);
}

#[tokio::test]
async fn a_value_that_still_does_not_fit_fails_the_run_with_a_clear_error() {
    fn junk(_: &Value) -> String {
        "{\"to\": [\"## completed ## ]\"], \"urgent\": true}".into()
    }
    let (url, _) = double(Kind::OpenAi, junk).await;
    let (out, trace) = executor(CONTACTS, &url, StructuredOutput::Auto).run(inputs(json!({"email": "x"}))).await;
    let err = out.expect_err("junk is never accepted");
    assert!(matches!(err, RunError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("is not an e-mail address"), "{err}");
    assert_eq!(trace.steps[0].raw.len(), 2, "one retry showing the error, then the failure");
}

#[tokio::test]
async fn a_forced_dialect_is_used_as_is_and_its_refusal_is_an_error() {
    let (url, seen) = double(Kind::LlamaCppPython, joy).await;
    let (out, _) = executor(EMOTION, &url, StructuredOutput::Forced(super::backend::Dialect::JsonObject)).run(inputs(json!({"tweet": "x"}))).await;
    assert!(out.is_ok());
    assert_eq!(seen.lock().expect("log").len(), 1, "no dialect tried before the forced one");

    let (url, _) = double(Kind::LlamaCppPython, joy).await;
    let (out, _) = executor(EMOTION, &url, StructuredOutput::Forced(super::backend::Dialect::JsonSchema)).run(inputs(json!({"tweet": "x"}))).await;
    assert!(out.expect_err("refused").to_string().contains("refused `structured_output: json_schema`"));

    let (url, seen) = double(Kind::OpenAi, |_| "[[ ## emotion ## ]]\nanger\n\n[[ ## completed ## ]]".into()).await;
    let (out, trace) = executor(EMOTION, &url, StructuredOutput::Off).run(inputs(json!({"tweet": "x"}))).await;
    assert_eq!(out.expect("parsed").get("emotion"), Some(&json!("anger")));
    assert!(seen.lock().expect("log")[0].get("response_format").is_none());
    assert_eq!(trace.steps[0].structure.as_deref(), Some("parsed"));
}

#[test]
fn answer_shapes_default_to_the_template() {
    assert_eq!(AnswerShape::default(), AnswerShape::Template);
}
