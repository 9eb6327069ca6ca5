//! `loopc bench review`: how fast the review page loads on a big store. Fills a fresh store with
//! N runs of a label program (default 100 000, spread over 30 days, with label margins and a
//! feedback mix: thumbs up and down, implicit rejections, user corrections and reviewers'
//! annotations), serves it in this process (the real app, on a tiny seeded model that no page
//! load uses), and times the queue page, a later queue page, a run page and the dashboard as a
//! signed-in reviewer would load them. Figures only, no thresholds.

use std::time::{Duration, Instant};

use anyhow::Context;
use loopc::runtime::{CacheSetting, Engine, EngineOptions, ProgramOptions};
use loopc::serve::{self, Reviewers, ServeOptions, Service};
use loopc::store::{FeedbackPayload, FeedbackSource, ImplicitSignal, NewFeedback, NewRun, RecordedRun, Store, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::args::BenchReviewArgs;
use super::measure::Latencies;
use super::Outcome;

const PROGRAM: &str = r#"program triage "Route a support ticket"
input ticket: text
output team: label(billing, tech, account, other)
signature Route "Route the ticket to the team that handles it." { in ticket: text out team: label(billing, tech, account, other) }
step route = predict Route { ticket: input.ticket }
return { team: route.team }
feedback thumbs: bool "was the team right"
feedback rating: int(1..5)
feedback correction "the right team"
"#;

const TEAMS: [&str; 4] = ["billing", "tech", "account", "other"];
const TICKETS: [&str; 6] = [
    "I was charged twice for order",
    "The app crashes when I open settings after update",
    "Please change the e-mail on my account, ticket",
    "Where is my parcel? It has been a week since order",
    "The invoice shows the wrong address for order",
    "I cannot log in after resetting my password, case",
];

/// The reviewer the benchmark signs in as.
const KEY: &str = "bench-reviewer-key-0123456789";

/// One stored run and the feedback to add to it.
fn fake_run(i: usize, rng: &mut ChaCha8Rng, now: Timestamp) -> (NewRun, Vec<(String, FeedbackPayload, FeedbackSource)>) {
    let ticket = format!("{} {i}", TICKETS[i % TICKETS.len()]);
    let team = TEAMS[rng.random_range(0..TEAMS.len())];
    // Margins mostly comfortable, some close calls: the unsure tier is a minority.
    let margin: f64 = -(1.0 - rng.random::<f64>()).ln() * 2.5;
    let age = Duration::from_millis(rng.random_range(0..30 * 86_400_000u64));
    let scores: Vec<Value> =
        TEAMS.iter().map(|t| json!({"label": t, "logprob": if *t == team { -0.1 } else { -0.1 - margin - rng.random::<f64>() }})).collect();
    let trace = json!({"schema": 1, "program": "triage", "latency_ms": 80, "steps": [{"step": "route", "kind": "predict", "served_by": "bench",
        "prompt": format!("Route the ticket to the team that handles it.\n\nticket: {ticket}"), "raw": [team], "choice_scores": scores,
        "prompt_tokens": 60, "completion_tokens": 0, "latency_ms": 80}]});
    let run = NewRun {
        outputs: Some(json!({"team": team})),
        trace,
        latency_ms: 80,
        created: Some(now.minus(age)),
        label_margin: Some(margin),
        user_id: Some(format!("user-{}", i % 500)),
        ..NewRun::new("triage", json!({"ticket": ticket}))
    };
    let mut feedback = Vec::new();
    let roll: f64 = rng.random();
    let other = TEAMS[rng.random_range(0..TEAMS.len())];
    if roll < 0.10 {
        feedback.push(("thumbs".to_string(), FeedbackPayload::Score(if rng.random::<f64>() < 0.7 { 1.0 } else { 0.0 }), FeedbackSource::User));
    } else if roll < 0.12 {
        feedback.push(("rejected".to_string(), ImplicitSignal::Rejected.payload(), FeedbackSource::Implicit));
    } else if roll < 0.15 {
        feedback.push(("correction".to_string(), FeedbackPayload::Correction(json!({"team": other})), FeedbackSource::User));
    } else if roll < 0.20 {
        feedback.push(("correction".to_string(), FeedbackPayload::Correction(json!({"team": other})), FeedbackSource::Annotation));
    }
    (run, feedback)
}

/// Fills `store` with `n` runs and their feedback from `writers` concurrent writers.
async fn fill(store: &Store, n: usize, writers: usize) -> anyhow::Result<(usize, f64)> {
    let now = Timestamp::now();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers.max(1) {
        let store = store.clone();
        tasks.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(w as u64);
            let mut feedback = 0usize;
            for i in (w..n).step_by(writers.max(1)) {
                let (run, fb) = fake_run(i, &mut rng, now);
                let created = run.created;
                let RecordedRun::Stored(id) = store.record_run(run).await? else { continue };
                for (key, payload, source) in fb {
                    let mut f = NewFeedback::new(id.clone(), key, payload);
                    f.source = source;
                    f.user_id = Some(if source == FeedbackSource::Annotation { "reviewer-1".into() } else { format!("user-{}", i % 500) });
                    f.created = created.map(|c| c.plus(Duration::from_secs(60)));
                    store.add_feedback(f).await?;
                    feedback += 1;
                }
            }
            anyhow::Ok(feedback)
        });
    }
    let mut feedback = 0;
    while let Some(done) = tasks.join_next().await {
        feedback += done.context("a writer failed")??;
    }
    Ok((feedback, started.elapsed().as_secs_f64()))
}

/// Loads `url` `n` times as the reviewer, one after another; the latencies.
async fn time_page(client: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<Latencies> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let response = client.get(url).header("authorization", format!("Bearer {KEY}")).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(status.is_success(), "GET {url}: {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
        out.push(t.elapsed());
    }
    Ok(Latencies::from_durations(out))
}

/// Runs `loopc bench review`.
pub fn run(args: &BenchReviewArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.runs > 0 && args.requests > 0, "--runs and --requests must be at least 1");
    let scratch = tempfile::tempdir().context("cannot make a temporary directory")?;
    let model = scratch.path().join("model");
    loopc::model::testing::write_tiny_model(&model, 7)?;
    let program = scratch.path().join("triage.loop");
    std::fs::write(&program, PROGRAM)?;
    let engine = Engine::builder().options(EngineOptions { responses: CacheSetting::Off, ..EngineOptions::default() }).build()?;
    let options = ProgramOptions { model_override: Some(model.display().to_string()), ..ProgramOptions::default() };
    let loaded = serve::load(&engine, &program, options)?;
    let url = args.store.clone().unwrap_or_else(|| format!("sqlite://{}", scratch.path().join("store.db").display()));
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let figures = rt.block_on(async {
        let store = Store::open(&url).await?;
        eprintln!("bench review: storing {} runs with feedback…", args.runs);
        let (feedback, fill_seconds) = fill(&store, args.runs, 4).await?;
        let tokens = serve::token_key(&store, None).await?;
        let service = Service::new(loaded, store.clone()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let reviewers = Reviewers::parse(&format!("bench {KEY}"))?;
        let server = tokio::spawn(serve::serve(listener, service, tokens, ServeOptions { reviewers, ..ServeOptions::default() }, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        // A later page and a run, found the way a reviewer would: from the queue page's links.
        let first = client.get(format!("{base}/review")).header("authorization", format!("Bearer {KEY}")).send().await?.text().await?;
        let link = |marker: &str| first.split(marker).nth(1).and_then(|s| s.split('"').next()).map(|s| s.replace("&amp;", "&"));
        let later = link("rel=\"next\" href=\"").context("the queue page has no next page")?;
        let run_page = link("<li><a href=\"").context("the queue page lists no run")?;
        let mut pages = Vec::new();
        for (name, path) in [("queue", "/review".to_string()), ("queue, page 2", later), ("run", run_page), ("dashboard", "/review/dashboard".to_string())] {
            time_page(&client, &format!("{base}{path}"), 2).await?; // warm the caches
            let times = time_page(&client, &format!("{base}{path}"), args.requests).await?;
            pages.push(json!({"page": name, "path": path, "n": times.count(), "p50_ms": times.percentile(0.5), "p95_ms": times.percentile(0.95),
                "max_ms": times.percentile(1.0)}));
        }
        let _ = stop.send(());
        server.await.context("the server task failed")??;
        anyhow::Ok(json!({"runs": args.runs, "feedback": feedback, "fill_seconds": fill_seconds, "store": loopc::store::mask_password(&url), "pages": pages}))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(Outcome::Success);
    }
    println!(
        "bench review: {} runs and {} pieces of feedback stored in {:.1} s",
        figures["runs"],
        figures["feedback"],
        figures["fill_seconds"].as_f64().unwrap_or(0.0)
    );
    for p in figures["pages"].as_array().into_iter().flatten() {
        println!(
            "  {:<15} {:>4} loads: p50 {:>7.1} ms, p95 {:>7.1} ms, max {:>7.1} ms",
            p["page"].as_str().unwrap_or(""),
            p["n"],
            p["p50_ms"].as_f64().unwrap_or(0.0),
            p["p95_ms"].as_f64().unwrap_or(0.0),
            p["max_ms"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(Outcome::Success)
}
