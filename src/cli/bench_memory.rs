//! `loopc bench memory`: what online memory costs a request when the store holds many
//! corrections. Fills a fresh store with N runs of a label program, each corrected by one of
//! many users (a tenth of the inputs corrected again by others, a few by a reviewer, so trust
//! has evidence; one user in ten answers wrong on purpose), loads a memory from it as `serve` does, then times what every served request
//! pays: catching up with the store (nothing new; and after one new correction) and recalling
//! demos for a new input. Figures only, no thresholds.

use std::time::{Duration, Instant};

use anyhow::Context;
use loopc::learn::Memory;
use loopc::runtime::adapter::Demo;
use loopc::runtime::memory::{DemoMemory, Recall};
use loopc::store::{FeedbackPayload, FeedbackSource, NewFeedback, NewRun, RecordedRun, RunId, Store, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use super::args::BenchMemoryArgs;
use super::measure::{peak_rss_mb, Latencies};
use super::Outcome;

const PROGRAM: &str = r#"program triage "Route a support ticket"
input ticket: text
output team: label(billing, tech, account, other)
signature Route "Route the ticket to the team that handles it." { in ticket: text out team: label(billing, tech, account, other) }
step route = predict Route { ticket: input.ticket }
return { team: route.team }
feedback correction "the right team"
memory route { demos: 4, tokens: 400 }
"#;

const TEAMS: [&str; 4] = ["billing", "tech", "account", "other"];
/// Words most tickets share (the long postings a query must walk).
const COMMON: [&str; 12] = ["the", "my", "i", "is", "a", "to", "and", "not", "for", "it", "on", "please"];
const SYLLABLES: [&str; 16] = ["ba", "ro", "ti", "ne", "ka", "lu", "mi", "so", "de", "va", "pe", "gu", "fa", "zo", "li", "ch"];

/// A ticket of 8 to 24 words: common words and words from a vocabulary of 20 000 drawn by a
/// Zipf-like law (a few frequent, most rare), as in real text.
fn ticket(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(8..=24);
    let words: Vec<String> = (0..n)
        .map(|_| {
            if rng.random::<f64>() < 0.35 {
                return COMMON[rng.random_range(0..COMMON.len())].to_string();
            }
            // Inverse transform of a 1/k law over 20 000 words.
            let k = (20_000f64.powf(rng.random::<f64>())) as usize;
            let mut w = String::new();
            let mut k2 = k + 7;
            while k2 > 0 {
                w.push_str(SYLLABLES[k2 % SYLLABLES.len()]);
                k2 /= SYLLABLES.len();
            }
            w
        })
        .collect();
    words.join(" ")
}

/// Stores `n` runs from `writers` concurrent writers, each corrected; a tenth of the inputs
/// are asked again and corrected by another user, one in fifty by a reviewer. Returns the
/// corrections stored.
async fn fill(store: &Store, n: usize, users: usize, writers: usize) -> anyhow::Result<usize> {
    let now = Timestamp::now();
    let mut tasks = tokio::task::JoinSet::new();
    let writers = writers.max(1);
    for w in 0..writers {
        let store = store.clone();
        tasks.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(w as u64);
            let mut recent: Vec<String> = Vec::new();
            let mut stored = 0usize;
            for i in (w..n).step_by(writers) {
                let text = match recent.len() {
                    l if l > 10 && rng.random::<f64>() < 0.1 => recent[rng.random_range(0..l)].clone(),
                    _ => ticket(&mut rng),
                };
                recent.push(text.clone());
                if recent.len() > 1000 {
                    recent.remove(0);
                }
                // The right team follows from the words; one user in ten answers another.
                let right = TEAMS[text.len() % TEAMS.len()];
                let u = rng.random_range(0..users.max(1));
                let team = if u % 10 == 9 { TEAMS[(text.len() + 1) % TEAMS.len()] } else { right };
                let user = format!("user-{u}");
                let created = now.minus(Duration::from_millis(rng.random_range(0..30 * 86_400_000u64)));
                let run = NewRun {
                    outputs: Some(json!({"team": TEAMS[i % TEAMS.len()]})),
                    created: Some(created),
                    user_id: Some(user.clone()),
                    ..NewRun::new("triage", json!({"ticket": text}))
                };
                let RecordedRun::Stored(id) = store.record_run(run).await? else { continue };
                let reviewer = rng.random::<f64>() < 0.02;
                correct(
                    &store,
                    &id,
                    if reviewer { right } else { team },
                    if reviewer { "reviewer-1" } else { &user },
                    reviewer,
                    Some(created.plus(Duration::from_secs(60))),
                )
                .await?;
                stored += 1;
                if w == 0 && stored % (n / writers / 10).max(1) == 0 {
                    eprintln!("bench memory: {} of {n} corrected runs stored", stored * writers);
                }
            }
            anyhow::Ok(stored)
        });
    }
    let mut stored = 0;
    while let Some(done) = tasks.join_next().await {
        stored += done.context("a writer failed")??;
    }
    Ok(stored)
}

async fn correct(store: &Store, run: &RunId, team: &str, user: &str, reviewer: bool, created: Option<Timestamp>) -> anyhow::Result<()> {
    let mut f = NewFeedback::new(run.clone(), "correction", FeedbackPayload::Correction(json!({"team": team})));
    f.source = if reviewer { FeedbackSource::Annotation } else { FeedbackSource::User };
    f.user_id = Some(user.to_string());
    f.created = created;
    store.add_feedback(f).await?;
    Ok(())
}

/// The figures of one timed phase, as JSON.
fn figures(times: &[Duration]) -> Value {
    let l = Latencies::from_durations(times.iter().copied());
    json!({"n": l.count(), "p50_ms": l.percentile(0.5), "p95_ms": l.percentile(0.95), "p99_ms": l.percentile(0.99), "max_ms": l.percentile(1.0)})
}

/// Runs `loopc bench memory`.
pub fn run(args: &BenchMemoryArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.corrections > 0 && args.requests > 0, "--corrections and --requests must be at least 1");
    let dag = loopc::graph::check_text(PROGRAM).dag.context("the benchmark's program does not check")?;
    let scratch = tempfile::tempdir().context("cannot make a temporary directory")?;
    let url = args.store.clone().unwrap_or_else(|| format!("sqlite://{}", scratch.path().join("store.db").display()));
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let figures = rt.block_on(async {
        let store = Store::open(&url).await?;
        eprintln!("bench memory: storing {} corrected runs…", args.corrections);
        let started = Instant::now();
        let stored = fill(&store, args.corrections, args.users, 4).await?;
        let fill_seconds = started.elapsed().as_secs_f64();

        let memory = Memory::new(&dag, &[]).context("the benchmark's program declares no memory")?;
        let started = Instant::now();
        let loaded = memory.sync(&store).await?;
        let load_seconds = started.elapsed().as_secs_f64();
        eprintln!("bench memory: memory loaded {} inputs in {load_seconds:.1} s; timing {} requests…", memory.len(), args.requests);

        // Token cost as the runtime counts it without a tokenizer: a quarter of the characters.
        let tokens = |d: &Demo| d.inputs.values().chain(d.outputs.values()).map(|v| v.to_string().chars().count()).sum::<usize>() / 4 + 8;
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let (mut sync_idle, mut sync_new, mut recall, mut request) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut recalled = 0usize;
        for i in 0..args.requests {
            let text = ticket(&mut rng);
            // Every tenth request follows a new correction stored just before it (untimed).
            let fresh = i % 10 == 0;
            if fresh {
                let run = NewRun {
                    outputs: Some(json!({"team": "tech"})),
                    user_id: Some("user-new".into()),
                    ..NewRun::new("triage", json!({"ticket": ticket(&mut rng)}))
                };
                if let RecordedRun::Stored(id) = store.record_run(run).await? {
                    correct(&store, &id, "billing", "user-new", false, None).await?;
                }
            }
            let t0 = Instant::now();
            memory.sync(&store).await?;
            let t1 = Instant::now();
            let inputs: Map<String, Value> = [("ticket".to_string(), Value::String(text))].into_iter().collect();
            let got = memory.recall(&Recall { step: "route", inputs: &inputs, tokens: &tokens });
            let t2 = Instant::now();
            recalled += got.len();
            if fresh {
                sync_new.push(t1 - t0)
            } else {
                sync_idle.push(t1 - t0)
            }
            recall.push(t2 - t1);
            request.push(t2 - t0);
        }
        let trust = memory.trust();
        let below = trust.below(0.5).len();
        anyhow::Ok(json!({
            "corrections": stored, "users": args.users, "store": loopc::store::mask_password(&url), "fill_seconds": fill_seconds,
            "load_seconds": load_seconds, "inputs": memory.len(), "votes": loaded.votes, "raters": trust.raters().count(), "raters_below_0_5": below,
            "demos_per_request": recalled as f64 / args.requests as f64,
            "sync_nothing_new": figures(&sync_idle), "sync_one_new": figures(&sync_new), "recall": figures(&recall), "per_request": figures(&request),
            "peak_rss_mb": peak_rss_mb(),
        }))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(Outcome::Success);
    }
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "bench memory: {} corrected runs by {} users stored in {:.1} s; memory loaded {} inputs ({} votes, {} raters, {} below trust 0.5) in {:.1} s",
        figures["corrections"],
        figures["users"],
        f(&figures["fill_seconds"]),
        figures["inputs"],
        figures["votes"],
        figures["raters"],
        figures["raters_below_0_5"],
        f(&figures["load_seconds"])
    );
    for (name, key) in
        [("catch up, nothing new", "sync_nothing_new"), ("catch up, one new", "sync_one_new"), ("recall", "recall"), ("per request", "per_request")]
    {
        let p = &figures[key];
        println!(
            "  {name:<22} {:>5}x: p50 {:>7.3} ms, p95 {:>7.3} ms, p99 {:>7.3} ms, max {:>7.3} ms",
            p["n"],
            f(&p["p50_ms"]),
            f(&p["p95_ms"]),
            f(&p["p99_ms"]),
            f(&p["max_ms"])
        );
    }
    println!("  demos recalled per request: {:.2}; peak memory {:.0} MB", f(&figures["demos_per_request"]), f(&figures["peak_rss_mb"]));
    Ok(Outcome::Success)
}
