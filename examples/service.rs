//! A small HTTP service that loads a program — a `.loop` file or a compiled artifact — once
//! and answers requests with it.
//!
//! ```sh
//! cargo run --release --example service -- programs/sentiment.loop
//! curl -s localhost:3000/run -H 'content-type: application/json' -d '{"review": "Broke in a day."}'
//! ```
//!
//! `POST /run` takes the program's inputs as a JSON object and answers with its outputs;
//! bad inputs get 400 with the field named, model or tool failures 502. One engine holds the
//! models; the program is loaded once at start-up and shared by every request (it is
//! `Send + Sync` and cheap to clone), and concurrent requests are batched by the model's
//! scheduler. Set `LOOPC_SERVICE_ADDR` to listen elsewhere (default `127.0.0.1:3000`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use loopc::runtime::executor::RunError;
use loopc::{Engine, Program};
use serde_json::{json, Map, Value};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "programs/sentiment.loop".to_string());
    // Loading checks the program and readies its models (provisioning them on first use).
    let program = tokio::task::spawn_blocking(move || load(&path)).await??;
    let app = Router::new().route("/run", post(run)).route("/health", get(|| async { "ok" })).with_state(program);
    let addr = std::env::var("LOOPC_SERVICE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// One engine for the process; the program (source or artifact) on it.
fn load(path: &str) -> Result<Program, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Engine::new()?.load(path)?)
}

async fn run(State(program): State<Program>, Json(inputs): Json<Map<String, Value>>) -> (StatusCode, Json<Value>) {
    match program.run(inputs).await {
        Ok(outputs) => (StatusCode::OK, Json(Value::Object(outputs))),
        Err(e @ RunError::Input { .. }) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e.to_string() }))),
        Err(e) => (StatusCode::BAD_GATEWAY, Json(json!({ "error": e.to_string() }))),
    }
}
