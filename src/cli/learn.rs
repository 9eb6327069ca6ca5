//! `loopc learn`, `loopc dataset export`, `loopc history` and `loopc why`: the learning loop's
//! commands. The logic is `loopc::learn`; this renders it.

use anyhow::Context;
use loopc::learn::{self, Current, ExportOptions, Round, RoundSettings};
use loopc::runtime::artifact::Artifact;
use loopc::runtime::source::ProgramFile;
use loopc::store::{Store, Timestamp};
use serde_json::json;

use super::args::{DatasetCommand, HistoryArgs, LearnArgs, WhyArgs};
use super::{source, Outcome};

/// The program of a `.loop` file or an artifact, as learning sees it.
fn current(path: &std::path::Path, color: bool) -> anyhow::Result<Current> {
    let loaded = source::load(path, color)?;
    Ok(match loaded.file {
        ProgramFile::Source { name, text } => Current { source_file: name.clone(), name, source: text, artifact: None },
        ProgramFile::Artifact { name, artifact } => {
            Current { source_file: artifact.program.source_file.clone(), source: artifact.program.source.clone(), name, artifact: Some(*artifact) }
        }
    })
}

/// Runs `loopc learn`.
pub fn learn(args: &LearnArgs, color: bool) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut interrupt = super::interrupt::Interrupt::register(&rt)?;
    let current = current(&args.file, color)?;
    let dag = loopc::graph::check_text(&current.source).dag.ok_or_else(|| anyhow::anyhow!("`{}` does not check", args.file.display()))?;
    let holdout = match &args.holdout {
        Some(p) => {
            let metric = super::compile::pick_metric(&dag, args.search.metric.as_deref(), None)?;
            Some(super::compile::load_data(p, &dag, &metric)?)
        }
        None => None,
    };
    let engine = args.runtime.reproducible_engine()?;
    let store = rt.block_on(Store::open(&args.store))?;
    let display = super::compile::Display::new(args.json, args.search.max_calls);
    let progress = |e: loopc::compile::Event<'_>| display.on(e);
    let settings = RoundSettings {
        margin: args.margin,
        concurrency: args.concurrency.max(1),
        max_rows: args.max_rows,
        judge_min_agreement: args.judge_min_agreement,
        holdout_share: args.holdout_share,
        min_agreement: args.min_agreement,
        review_holdout_share: args.review_holdout_share,
        ..RoundSettings::DEFAULT
    };
    let round = Round {
        holdout,
        since: args.since,
        optimizer: args.search.optimizer,
        search: args.search.settings(),
        metric: args.search.metric.clone(),
        settings,
        options: args.runtime.options()?,
        progress: &progress,
        ..Round::new(&engine, &store, current)
    };
    let outcome = rt.block_on(async {
        tokio::select! {
            r = learn::learn(round) => r.map(Some),
            _ = interrupt.wait() => Ok(None),
        }
    });
    display.finish();
    let Some(outcome) = outcome? else {
        eprintln!("interrupted: nothing was recorded");
        return Ok(Outcome::Interrupted);
    };
    if outcome.decision.promote {
        if let Some(out) = &args.out {
            outcome.candidate.write(out)?;
        }
    }
    print_outcome(args, &outcome);
    Ok(Outcome::Success)
}

/// Prints what a round of `loopc learn` did, as text or JSON.
fn print_outcome(args: &LearnArgs, outcome: &learn::Outcome) {
    let d = &outcome.decision;
    let written = if d.promote { args.out.clone() } else { None };
    if args.json {
        println!(
            "{}",
            json!({
                "promoted": d.promote, "reason": d.reason, "candidate": outcome.hash,
                "holdout_current": d.current, "holdout_candidate": d.candidate, "holdout_stopped_after": d.stopped_after, "difference": d.difference,
                "interval": [d.interval.0, d.interval.1], "holdout_items": d.items, "holdout_frozen": d.frozen, "holdout_grown": d.grown,
                "detectable": d.detectable,
                "dev_score": outcome.candidate.provenance.final_score,
                "verdict": outcome.verdict, "gold_rows": outcome.export.gold_rows(), "model_labelled_rows": outcome.export.model_labelled_rows(),
                "holdout_rows_from_store": outcome.export.holdout.len(),
                "feedback": outcome.export.feedback_ids.len(),
                "judge_agreement": outcome.judge.as_ref().map(|c| c.agreement),
                "judge_items": outcome.judge.as_ref().map(|c| c.items),
                "left_out": outcome.export.left_out,
                "written": written,
            })
        );
        return;
    }
    print_left_out(&outcome.export.left_out);
    if let Some(c) = &outcome.judge {
        println!("the judge agrees with people on {:.2} of {} rated runs", c.agreement, c.items);
    }
    println!(
        "{}: {} (holdout {:.3} → {}{:.3} on {} items, 90% interval of the difference {:+.3} to {:+.3}{})",
        if d.promote { "promoted" } else { "not promoted" },
        d.reason,
        d.current,
        learn::gate::at_most(d.stopped_after),
        d.candidate,
        d.items,
        d.interval.0,
        d.interval.1,
        power(d.detectable, d.items, Some((d.frozen, d.grown)))
    );
    let short = &outcome.hash[..12.min(outcome.hash.len())];
    match written {
        Some(out) => println!("wrote {} (version {short})", out.display()),
        None if d.promote => println!("version {short} recorded in the store; pass -o to write it"),
        None => println!("version {short} recorded in the store as {}", outcome.verdict),
    }
}

/// The gate's power, as a clause: the smallest improvement it detects on `items` (of which
/// `frozen` from the holdout file and `grown` from the store, when known).
fn power(detectable: Option<f64>, items: usize, split: Option<(usize, usize)>) -> String {
    let split = split.map_or(String::new(), |(f, g)| format!(" ({f} frozen, {g} grown from the store)"));
    detectable.map_or(String::new(), |p| format!("; power: a true improvement of {p:+.3} is promoted with 80% probability on {items} items{split}"))
}

/// Says whose feedback was left out for low trust (on stderr, beside the summary).
fn print_left_out(left: &[learn::trust::LeftOut]) {
    for l in left {
        eprintln!("left out {} piece(s) of feedback by user sha256:{}: {}", l.feedback, &l.user_sha256[..12.min(l.user_sha256.len())], l.reason);
    }
}

/// Runs `loopc dataset`.
pub fn dataset(cmd: &DatasetCommand, color: bool) -> anyhow::Result<Outcome> {
    let DatasetCommand::Export { store, program, since, min_agreement, holdout_share, review_holdout_share, out } = cmd;
    let dag = source::load_dag(program, color)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let options = ExportOptions {
        since: *since,
        min_agreement: *min_agreement,
        holdout_share: *holdout_share,
        review_holdout_share: *review_holdout_share,
        ..ExportOptions::default()
    };
    let export = rt.block_on(async {
        let store = Store::open(store).await?;
        learn::export(&store, dag.name(), &dag, &options).await
    })?;
    loopc::fs::atomic_write(out, export.jsonl().as_bytes()).with_context(|| format!("cannot write `{}`", out.display()))?;
    let count = |k: learn::RowKind| export.train.iter().chain(&export.holdout).chain(&export.grown).filter(|r| r.kind == k).count();
    eprintln!(
        "wrote {}: {} gold rows ({} held out, {} reviewed held out), {} accepted model outputs, {} negatives, from {} runs and {} pieces of feedback ({} invalid corrections skipped); snapshot {}",
        out.display(),
        count(learn::RowKind::Gold),
        export.holdout.len(),
        export.grown.len(),
        count(learn::RowKind::ModelLabelled),
        export.negatives.len(),
        export.runs_read,
        export.feedback_ids.len(),
        export.invalid_corrections,
        &export.sha256[..12]
    );
    print_left_out(&export.left_out);
    Ok(Outcome::Success)
}

/// Runs `loopc history`.
pub fn history(args: &HistoryArgs) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let rows = rt.block_on(async {
        let store = Store::open(&args.store).await?;
        let programs: Vec<String> = match &args.program {
            Some(p) => vec![p.clone()],
            None => {
                let mut all: Vec<String> = store.all_artifacts().await?.into_iter().map(|a| a.program).collect();
                all.sort();
                all.dedup();
                all
            }
        };
        let mut rows = Vec::new();
        for p in programs {
            rows.push((p.clone(), learn::history(&store, &p).await?));
        }
        Ok::<_, anyhow::Error>(rows)
    })?;
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .flat_map(|(p, vs)| {
                vs.iter().map(move |v| {
                    let r = &v.record;
                    json!({"program": p, "hash": v.hash, "parent": v.parent, "created_ms": v.created_ms, "decision": r.decision, "reason": r.reason,
                           "holdout_current": r.holdout_current, "holdout_candidate": r.holdout_candidate,
                           "holdout_stopped_after": r.holdout_stopped_after, "difference": r.difference,
                           "interval": r.interval, "holdout_items": r.holdout_items, "holdout_frozen": r.holdout_frozen, "holdout_grown": r.holdout_grown,
                           "detectable": r.detectable, "feedback": r.feedback_count, "tainted": v.tainted,
                           "left_out": r.left_out})
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Outcome::Success);
    }
    let score = |s: Option<f64>| s.map_or_else(|| "  -  ".to_string(), |s| format!("{s:.3}"));
    for (program, versions) in rows {
        println!("{program}: {} version(s)", versions.len());
        for v in versions {
            let r = &v.record;
            let when = Timestamp::from_millis(v.created_ms);
            let taint = if v.tainted { "  [trained on a forgotten user's data: learn again]" } else { "" };
            println!(
                "  {}  {when}  {:<9} holdout {} → {}{}  {} feedback  parent {}{taint}\n      {}",
                &v.hash[..12.min(v.hash.len())],
                r.decision,
                score(r.holdout_current),
                learn::gate::at_most(r.holdout_stopped_after),
                score(r.holdout_candidate),
                r.feedback_count,
                v.parent.as_deref().map_or("-", |p| &p[..12.min(p.len())]),
                r.reason
            );
            if r.detectable.is_some() {
                let split = r.holdout_frozen.zip(r.holdout_grown);
                println!("      {}", power(r.detectable, r.holdout_items, split).trim_start_matches("; "));
            }
            for l in &r.left_out {
                println!("      left out {} piece(s) of feedback by user sha256:{}: {}", l.feedback, &l.user_sha256[..12.min(l.user_sha256.len())], l.reason);
            }
        }
    }
    Ok(Outcome::Success)
}

/// Runs `loopc why`.
pub fn why(args: &WhyArgs) -> anyhow::Result<Outcome> {
    let artifact = Artifact::read(&args.artifact)?;
    let why = learn::why(&artifact);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&why)?);
        return Ok(Outcome::Success);
    }
    match &why.learned_from {
        None => println!("{}: not learned from stored feedback (compiled from files)", why.program),
        Some(l) => println!(
            "{}: learned from {} gold and {} accepted rows ({} pieces of feedback), dataset {}",
            why.program,
            l.gold_rows,
            l.model_labelled_rows,
            l.feedback,
            &l.dataset_sha256[..12.min(l.dataset_sha256.len())]
        ),
    }
    for l in why.learned_from.iter().flat_map(|l| &l.left_out) {
        println!("left out {} piece(s) of feedback by user sha256:{}: {}", l.feedback, &l.user_sha256[..12.min(l.user_sha256.len())], l.reason);
    }
    let list = |ids: &Option<Vec<String>>| ids.as_ref().map_or_else(|| "-".to_string(), |ids| ids.join(", "));
    for (step, demos) in &why.steps {
        println!("\nstep `{step}`:");
        for (i, d) in demos.iter().enumerate() {
            println!("  demo {i}: {} → {}", serde_json::Value::Object(d.inputs.clone()), serde_json::Value::Object(d.outputs.clone()));
            println!("    {}; runs {}; feedback {}; {} user(s)", d.kind, list(&d.run_ids), list(&d.feedback_ids), d.users);
        }
    }
    Ok(Outcome::Success)
}
