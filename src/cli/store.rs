//! `loopc runs list|show`, `loopc feedback list`, `loopc forget`: the store from the command
//! line (`forget` through `loopc::learn::forget`, which also marks versions the user trained). JSON output uses the same layout as the HTTP API (`loopc::serve::run_json`).

use anyhow::Context;
use loopc::serve::{feedback_json, run_json};
use loopc::store::{FeedbackFilter, FeedbackPayload, FeedbackSource, RunCursor, RunFilter, RunId, RunOrder, Store, StoredFeedback, Timestamp};
use serde_json::{json, Value};

use super::args::{FeedbackListArgs, ForgetArgs, RunsListArgs, RunsShowArgs};
use super::Outcome;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

fn time(flag: &str, value: &Option<String>) -> anyhow::Result<Option<Timestamp>> {
    value.as_deref().map(|t| t.parse::<Timestamp>().with_context(|| format!("--{flag}"))).transpose()
}

/// One line of text for a JSON value, cut to `max` characters.
fn short(v: &Value, max: usize) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() > max {
        format!("{}…", one_line.chars().take(max.saturating_sub(1)).collect::<String>())
    } else {
        one_line
    }
}

fn payload_text(f: &StoredFeedback) -> String {
    match &f.payload {
        FeedbackPayload::Score(s) => format!("score {s}"),
        FeedbackPayload::Value(v) => format!("value {}", short(&Value::String(v.clone()), 40)),
        FeedbackPayload::Correction(c) => format!("correction {}", short(c, 60)),
    }
}

/// `loopc runs list`.
pub fn runs_list(args: &RunsListArgs) -> anyhow::Result<Outcome> {
    let filter = RunFilter {
        program: args.program.clone(),
        artifact_hash: args.artifact.clone(),
        user_id: args.user.clone(),
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
        limit: args.limit.max(1),
        after: args.after.as_deref().map(str::parse::<RunCursor>).transpose()?,
        order: if args.oldest_first { RunOrder::OldestFirst } else { RunOrder::NewestFirst },
    };
    let page = runtime()?.block_on(async {
        let store = Store::open(&args.store.store).await?;
        let page = store.runs(&filter).await;
        store.close().await;
        page
    })?;
    if args.json {
        let runs: Vec<Value> = page.items.iter().map(|r| run_json(r, false)).collect();
        println!("{}", serde_json::to_string_pretty(&json!({"runs": runs, "next": page.next.map(|c| c.to_string())}))?);
        return Ok(Outcome::Success);
    }
    if page.items.is_empty() {
        eprintln!("no runs match");
        return Ok(Outcome::Success);
    }
    println!("{:<24}  {:<30}  {:<18}  {:>7}  {:>3}  outputs", "created", "run", "program", "ms", "fb");
    for r in &page.items {
        let outputs = match (&r.outputs, &r.error) {
            (Some(o), _) => short(o, 60),
            (None, Some(e)) => format!("error: {}", short(&Value::String(e.clone()), 53)),
            (None, None) => String::new(),
        };
        println!(
            "{:<24}  {:<30}  {:<18}  {:>7}  {:>3}  {outputs}",
            r.created.to_string(),
            r.id.as_str(),
            short(&Value::String(r.program.clone()), 18),
            r.latency_ms,
            r.feedback.len()
        );
    }
    if let Some(next) = page.next {
        eprintln!("more: --after {next}");
    }
    Ok(Outcome::Success)
}

/// `loopc runs show`.
pub fn runs_show(args: &RunsShowArgs) -> anyhow::Result<Outcome> {
    let id = RunId::parse(&args.id)?;
    let run = runtime()?.block_on(async {
        let store = Store::open(&args.store.store).await?;
        let run = store.run(&id).await;
        store.close().await;
        run
    })?;
    let Some(run) = run else {
        anyhow::bail!("run `{id}` is not in the store {}", loopc::store::mask_password(&args.store.store));
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run_json(&run, true))?);
        return Ok(Outcome::Success);
    }
    println!("run {} of `{}` at {} ({} ms)", run.id, run.program, run.created, run.latency_ms);
    if let Some(a) = &run.artifact_hash {
        println!("artifact {a}");
    }
    if let Some(u) = &run.user_id {
        println!("user {u}");
    }
    println!("inputs  {}", run.inputs);
    match (&run.outputs, &run.error) {
        (Some(o), _) => println!("outputs {o}"),
        (None, Some(e)) => println!("error   {e}"),
        (None, None) => {}
    }
    for step in run.trace.get("steps").and_then(Value::as_array).into_iter().flatten() {
        let field = |k: &str| step.get(k).cloned().unwrap_or(Value::Null);
        println!(
            "── step {} ({}) {} ms, served by {}",
            short(&field("step"), 40),
            short(&field("kind"), 20),
            field("latency_ms"),
            short(&field("served_by"), 60)
        );
        if let Some(raw) = step.get("raw").and_then(Value::as_array) {
            for r in raw {
                println!("   raw: {}", short(r, 100));
            }
        }
    }
    if run.feedback.is_empty() {
        println!("no feedback");
    }
    for f in &run.feedback {
        let comment = f.comment.as_deref().map(|c| format!(" — {}", short(&Value::String(c.to_string()), 60))).unwrap_or_default();
        println!("feedback {} {} {} ({}){comment}", f.created, f.key, payload_text(f), f.source);
    }
    Ok(Outcome::Success)
}

/// `loopc feedback list`.
pub fn feedback_list(args: &FeedbackListArgs) -> anyhow::Result<Outcome> {
    let filter = FeedbackFilter {
        program: args.program.clone(),
        artifact_hash: args.artifact.clone(),
        run_id: args.run.as_deref().map(RunId::parse).transpose()?,
        key: args.key.clone(),
        source: args.source.as_deref().map(str::parse::<FeedbackSource>).transpose()?,
        user_id: args.user.clone(),
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
        limit: args.limit,
    };
    let items = runtime()?.block_on(async {
        let store = Store::open(&args.store.store).await?;
        let items = store.feedback(&filter).await;
        store.close().await;
        items
    })?;
    if args.json {
        let items: Vec<Value> = items.iter().map(feedback_json).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "feedback": items }))?);
        return Ok(Outcome::Success);
    }
    if items.is_empty() {
        eprintln!("no feedback matches");
        return Ok(Outcome::Success);
    }
    println!("{:<24}  {:<30}  {:<12}  {:<10}  what", "created", "run", "key", "source");
    for f in &items {
        let comment = f.comment.as_deref().map(|c| format!(" — {}", short(&Value::String(c.to_string()), 50))).unwrap_or_default();
        println!("{:<24}  {:<30}  {:<12}  {:<10}  {}{comment}", f.created.to_string(), f.run_id.as_str(), f.key, f.source.as_str(), payload_text(f));
    }
    Ok(Outcome::Success)
}

/// `loopc forget`.
pub fn forget(args: &ForgetArgs) -> anyhow::Result<Outcome> {
    // `learn::forget` also marks the artifact versions the user's feedback trained.
    let (removed, marked) = runtime()?.block_on(async {
        let store = Store::open(&args.store.store).await?;
        let forgotten = loopc::learn::forget(&store, &args.user).await;
        store.close().await;
        anyhow::Ok(forgotten?)
    })?;
    if args.json {
        println!("{}", json!({"runs": removed.runs, "feedback": removed.feedback, "marked_versions": marked}));
    } else {
        println!("forgot the user: {} run(s) and {} feedback deleted; the audit log records it by the user id's hash", removed.runs, removed.feedback);
        for hash in &marked {
            println!("marked version {} (trained on the user's feedback): the next `loopc learn` rebuilds without it", &hash[..hash.len().min(12)]);
        }
    }
    Ok(Outcome::Success)
}
