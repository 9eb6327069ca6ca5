//! `loopc bench serve`: serves a program in this process on a free loopback port (the real
//! HTTP app and store, the response cache off) and measures, from N concurrent HTTP clients:
//! runs (each followed by one feedback sent with its run's token), then feedback alone (what
//! the store sustains through HTTP), then the store's own feedback write rate without HTTP
//! (`loopc::store::bench_feedback_writes`). Figures only, no thresholds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use loopc::graph::{Dag, FeedbackKind, Type};
use loopc::runtime::{CacheSetting, Engine, EngineOptions};
use loopc::serve::{self, ServeOptions, Service};
use loopc::store::{bench_feedback_writes, Backend, Store};
use serde_json::{json, Map, Value};

use super::args::BenchServeArgs;
use super::measure::Latencies;
use super::{source, Outcome};

const PHRASES: [&str; 6] = [
    "arrived on time and works well",
    "stopped working after a week",
    "is fine for the price",
    "broke the first time I used it",
    "does the job",
    "came with a missing part",
];

/// What one phase measured.
struct Phase {
    n: usize,
    failed: usize,
    seconds: f64,
    latencies: Vec<Duration>,
}

impl Phase {
    fn json(&self) -> Value {
        let l = Latencies::from_durations(self.latencies.iter().copied());
        let pct = |p: f64| l.percentile(p);
        json!({
            "n": self.n,
            "failed": self.failed,
            "seconds": self.seconds,
            "per_second": if self.seconds > 0.0 { (self.n - self.failed) as f64 / self.seconds } else { 0.0 },
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        })
    }
}

/// A valid feedback body for run `run_id` (with `outputs`): the program's first declared
/// score or value feedback, else a correction repeating the outputs.
fn feedback_body(dag: &Dag, run_id: &str, outputs: &Value, client_id: &str) -> Value {
    let mut body = json!({"run_id": run_id, "id": client_id, "comment": "benchmark feedback"});
    let spec = dag.feedback().iter().find(|f| f.kind != FeedbackKind::Correction).or_else(|| dag.feedback().first());
    let Some(spec) = spec else { return body };
    let (field, value) = match &spec.kind {
        FeedbackKind::Bool => ("score", json!(1)),
        FeedbackKind::Int { min, .. } => ("score", json!(min.unwrap_or(1))),
        FeedbackKind::Float { min, .. } => ("score", json!(min.unwrap_or(1.0))),
        FeedbackKind::Label(labels) => ("value", json!(labels.first())),
        FeedbackKind::Text => ("value", json!("fine")),
        FeedbackKind::Correction => ("correction", outputs.clone()),
    };
    body["key"] = spec.name.clone().into();
    body[field] = value;
    body
}

async fn post(client: &reqwest::Client, url: &str, bearer: Option<&str>, body: &Value) -> anyhow::Result<(u16, Value)> {
    let mut req = client.post(url).header("content-type", "application/json").body(serde_json::to_vec(body)?);
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Runs `clients` tasks that each call `work(i)` for the next unclaimed `i < n`, timing each.
async fn phase<F, Fut>(clients: usize, n: usize, work: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (work, next) = (work.clone(), next.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                let t = Instant::now();
                let ok = work(i).await;
                out.push((t.elapsed(), ok));
            }
        });
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        for (d, ok) in done.unwrap_or_default() {
            latencies.push(d);
            failed += usize::from(!ok);
        }
    }
    Phase { n, failed, seconds: started.elapsed().as_secs_f64(), latencies }
}

/// Runs `loopc bench serve`.
pub fn run(args: &BenchServeArgs, color: bool) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.clients > 0 && args.requests > 0, "--clients and --requests must be at least 1");
    let dag = source::load_dag(&args.file, color)?;
    anyhow::ensure!(dag.inputs().iter().all(|f| f.ty == Type::Text), "bench serve generates text inputs; this program has other input types");
    let engine = Engine::builder()
        .options(EngineOptions { responses: CacheSetting::Off, load: args.runtime.batching.load_options(true), ..EngineOptions::default() })
        .progress(Arc::new(super::progress::ConsoleProgress::new()))
        .build()?;
    let loaded = serve::load(&engine, &args.file, args.runtime.options()?)?;
    let scratch = tempfile::tempdir().context("cannot make a temporary directory")?;
    let url = args.store.clone().unwrap_or_else(|| format!("sqlite://{}", scratch.path().join("store.db").display()));
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let figures = rt.block_on(async {
        let store = Store::open(&url).await?;
        let backend = store.backend();
        let tokens = serve::token_key(&store, None).await?;
        let service = Service::new(loaded, store.clone()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = ServeOptions { max_inflight: args.clients.max(64), ..ServeOptions::default() };
        let server = tokio::spawn(serve::serve(listener, service, tokens, options, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
        let prefix = format!("bench-{}", std::process::id());
        let runs: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();

        // Runs, each followed by one feedback with its own token.
        let feedback_latencies: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
        let (c, b, d, r, fl, p) = (client.clone(), base.clone(), Arc::new(dag.clone()), runs.clone(), feedback_latencies.clone(), prefix.clone());
        let run_phase = phase(args.clients, args.requests, move |i| {
            let (c, b, d, r, fl, p) = (c.clone(), b.clone(), d.clone(), r.clone(), fl.clone(), p.clone());
            async move {
                let inputs: Map<String, Value> =
                    d.inputs().iter().map(|f| (f.name.clone(), Value::String(format!("Order {i}: the product {}.", PHRASES[i % PHRASES.len()])))).collect();
                let Ok((200, answer)) = post(&c, &format!("{b}/v1/run"), None, &json!({"inputs": inputs, "user_id": format!("bench-user-{}", i % 10)})).await
                else {
                    return false;
                };
                let (Some(run_id), Some(token)) = (answer["run_id"].as_str(), answer["feedback_token"].as_str()) else { return false };
                let body = feedback_body(&d, run_id, &answer["outputs"], &format!("{p}-run-{i}"));
                let t = Instant::now();
                let ok = matches!(post(&c, &format!("{b}/v1/feedback"), Some(token), &body).await, Ok((201, _)));
                fl.lock().unwrap_or_else(|e| e.into_inner()).push(t.elapsed());
                r.lock().unwrap_or_else(|e| e.into_inner()).push(run_id.to_string());
                ok
            }
        })
        .await;
        let run_ids = runs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        anyhow::ensure!(!run_ids.is_empty(), "no run succeeded; is the model usable? (try `loopc run` on the program)");

        // Feedback alone, through HTTP: what the store sustains behind the app.
        let (c, b, d, ids, p) = (client.clone(), base.clone(), Arc::new(dag.clone()), Arc::new(run_ids), prefix.clone());
        let feedback_phase = phase(args.clients, args.feedback, move |i| {
            let (c, b, d, ids, p) = (c.clone(), b.clone(), d.clone(), ids.clone(), p.clone());
            async move {
                let run_id = &ids[i % ids.len()];
                let body = feedback_body(&d, run_id, &Value::Null, &format!("{p}-fb-{i}"));
                matches!(post(&c, &format!("{b}/v1/feedback"), None, &body).await, Ok((201, _)))
            }
        })
        .await;
        let _ = stop.send(());
        server.await.context("the server task failed")??;

        // The store alone, on a store of its own kind.
        let direct = Store::open(&url).await?;
        let writes = bench_feedback_writes(&direct, args.feedback, args.clients).await?;
        direct.close().await;
        let run_feedback = Phase {
            n: run_phase.n - run_phase.failed,
            failed: 0,
            seconds: run_phase.seconds,
            latencies: feedback_latencies.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        anyhow::Ok(json!({
            "program": dag.name(),
            "store": match backend { Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" },
            "clients": args.clients,
            "runs": run_phase.json(),
            "run_feedback": run_feedback.json(),
            "feedback_http": feedback_phase.json(),
            "feedback_store": {"n": writes.writes, "seconds": writes.seconds, "per_second": writes.per_second()},
        }))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(Outcome::Success);
    }
    let f = &figures;
    let line = |name: &str, p: &Value, unit: &str| {
        println!(
            "  {name:<15} {:>6} in {:>6.2} s: {:>8.1} {unit}/s, latency p50 {:.1} ms, p99 {:.1} ms{}",
            p["n"],
            p["seconds"].as_f64().unwrap_or(0.0),
            p["per_second"].as_f64().unwrap_or(0.0),
            p["p50_ms"].as_f64().unwrap_or(0.0),
            p["p99_ms"].as_f64().unwrap_or(0.0),
            if p["failed"].as_u64().unwrap_or(0) > 0 { format!(" ({} failed)", p["failed"]) } else { String::new() }
        )
    };
    println!("bench serve: `{}` on {} with {} clients", f["program"].as_str().unwrap_or(""), f["store"].as_str().unwrap_or(""), f["clients"]);
    line("runs", &f["runs"], "runs");
    line("  + feedback", &f["run_feedback"], "writes");
    line("feedback/HTTP", &f["feedback_http"], "writes");
    println!(
        "  {:<15} {:>6} in {:>6.2} s: {:>8.1} writes/s (Store::add_feedback, no HTTP)",
        "feedback/store",
        f["feedback_store"]["n"],
        f["feedback_store"]["seconds"].as_f64().unwrap_or(0.0),
        f["feedback_store"]["per_second"].as_f64().unwrap_or(0.0)
    );
    Ok(Outcome::Success)
}
