//! A small service built on loopc as a library: it loads a program — a `.loop` file or a
//! compiled artifact — once, runs it, and records every run and every piece of feedback in
//! the store through `loopc::serve::Service` (the same path `loopc serve` uses, without its
//! HTTP layer). Two ways to use it:
//!
//! ```sh
//! # Without HTTP: run one input, record the run, a thumbs-up and an `accepted` signal, and
//! # print the run as the store holds it (inputs redacted, feedback attached).
//! cargo run --release --example service -- ticket_routing.json --once '{"ticket": "I was charged twice"}'
//!
//! # As an HTTP service of its own: POST /run answers with the outputs (and the stored run's
//! # id in `x-run-id`); POST /feedback takes {"run_id", "key", "score" | "value" | "correction"}.
//! cargo run --release --example service -- programs/sentiment.loop
//! curl -s localhost:3000/run -H 'content-type: application/json' -d '{"review": "Broke in a day."}'
//! ```
//!
//! Bad inputs get 400 with the field named, model or tool failures 502. The store is
//! `$LOOPC_STORE` (default `sqlite://loopc-store.db`); `LOOPC_SERVICE_ADDR` sets where to listen
//! (default `127.0.0.1:3000`). For the full server (auth, feedback tokens, metrics, limits) use
//! `loopc serve`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use loopc::serve::{FeedbackInput, RunFor, ServeError, Service};
use loopc::store::{RunId, Store};
use loopc::Engine;
use serde_json::{json, Map, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().cloned().unwrap_or_else(|| "programs/sentiment.loop".to_string());
    // Loading checks the program and readies its models (provisioning them on first use); an
    // artifact is identified in the store by the SHA-256 of its bytes.
    let loaded =
        tokio::task::spawn_blocking(move || -> Result<_, BoxError> { Ok(loopc::serve::load(&Engine::new()?, path.as_ref(), Default::default())?) }).await??;
    let store = Store::open(&std::env::var("LOOPC_STORE").unwrap_or_else(|_| "sqlite://loopc-store.db".into())).await?;
    let service = Service::new(loaded, store).await?;
    match args.iter().position(|a| a == "--once") {
        Some(i) => once(&service, args.get(i + 1).map(String::as_str).unwrap_or("{}")).await,
        None => http(service).await,
    }
}

/// The library path, no HTTP: run, record, give feedback, read the run back.
async fn once(service: &Service, input: &str) -> Result<(), BoxError> {
    let inputs: Map<String, Value> = serde_json::from_str(input)?;
    let served = service.run(inputs, RunFor { user_id: Some("example-user".into()), ..RunFor::default() }).await?;
    let outputs = served.outputs?;
    let run_id = served.run_id.ok_or("the run was not stored")?;
    // A person's thumbs-up, sent twice with one client id: stored once.
    for _ in 0..2 {
        let thumbs = FeedbackInput {
            client_id: Some(format!("{run_id}-thumbs")),
            run_id: Some(run_id.clone()),
            key: "thumbs".into(),
            score: Some(1.0),
            ..Default::default()
        };
        service.feedback(thumbs).await?;
    }
    // The product kept the answer: an implicit signal.
    service.feedback(FeedbackInput { run_id: Some(run_id.clone()), key: "accepted".into(), ..Default::default() }).await?;
    let stored = service.store().run(&run_id).await?.ok_or("the run is not in the store")?;
    println!("{}", json!({"outputs": outputs, "stored": loopc::serve::run_json(&stored, false)}));
    service.store().close().await;
    Ok(())
}

/// The same service behind a small HTTP app of its own.
async fn http(service: Service) -> Result<(), BoxError> {
    let app = Router::new().route("/run", post(run)).route("/feedback", post(feedback)).route("/health", get(|| async { "ok" })).with_state(service);
    let addr = std::env::var("LOOPC_SERVICE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn error(e: ServeError) -> (StatusCode, HeaderMap, Json<Value>) {
    let status = match &e {
        ServeError::Input(_) | ServeError::Feedback(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, HeaderMap::new(), Json(json!({ "error": e.to_string() })))
}

async fn run(State(service): State<Service>, Json(inputs): Json<Map<String, Value>>) -> (StatusCode, HeaderMap, Json<Value>) {
    let served = match service.run(inputs, RunFor::default()).await {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    let mut headers = HeaderMap::new();
    if let Some(id) = served.run_id.as_ref().and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
        headers.insert("x-run-id", id);
    }
    match served.outputs {
        Ok(outputs) => (StatusCode::OK, headers, Json(Value::Object(outputs))),
        Err(e) => (StatusCode::BAD_GATEWAY, headers, Json(json!({ "error": e.to_string() }))),
    }
}

async fn feedback(State(service): State<Service>, Json(body): Json<Value>) -> (StatusCode, HeaderMap, Json<Value>) {
    let run_id = body["run_id"].as_str().and_then(|r| RunId::parse(r).ok());
    let input = FeedbackInput {
        run_id,
        key: body["key"].as_str().unwrap_or_default().to_string(),
        score: body["score"].as_f64(),
        value: body["value"].as_str().map(str::to_string),
        correction: body.get("correction").cloned(),
        comment: body["comment"].as_str().map(str::to_string),
        ..Default::default()
    };
    match service.feedback(input).await {
        Ok(write) => (StatusCode::OK, HeaderMap::new(), Json(json!({"id": write.id.as_str()}))),
        Err(e) => error(e),
    }
}
