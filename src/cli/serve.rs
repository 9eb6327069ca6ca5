//! `loopc serve`: load the program, open the store, listen, and serve until SIGTERM or Ctrl-C,
//! then drain (requests in flight are answered) and exit 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use loopc::compile::Dataset;
use loopc::learn::CanaryRules;
use loopc::serve::{self, AllowedOrigins, ApiKey, LearnLoop, MemoryOptions, Reporter, Reviewers, ServeOptions, Service};
use loopc::store::{mask_password, Store};

use super::args::ServeArgs;
use super::{source, Outcome};

/// The background learner of `--learn-every`, if asked for: the round's and the canary's
/// defaults are the library's, and each flag overrides its own.
fn learn_loop(args: &ServeArgs, holdout: Option<Dataset>) -> Option<LearnLoop> {
    let trigger = args.learn_every?;
    let mut l = LearnLoop::new(trigger);
    l.holdout = holdout;
    l.round.holdout_share = args.holdout_share;
    l.round.review_holdout_share = args.review_holdout_share;
    l.round.margin = args.margin;
    l.round.max_rows = args.max_rows.max(1);
    l.explore = args.explore;
    l.canary = CanaryRules { runs: args.canary_runs, margin: args.canary_margin };
    l.poll = args.learn_poll;
    l.report = Reporter::new(|outcome| match outcome {
        Ok(turn) => eprintln!("loopc serve: learner: {turn}"),
        Err(e) => eprintln!("loopc serve: learner failed: {e}"),
    });
    Some(l)
}

/// The human-labelled holdout of `--holdout`, if given: the learner's gate judges on it, and
/// online memory judges users' trust by it.
fn holdout(args: &ServeArgs, color: bool) -> anyhow::Result<Option<Dataset>> {
    let Some(p) = &args.holdout else { return Ok(None) };
    let dag = source::load(&args.file, color)?.dag;
    let metric = super::compile::pick_metric(&dag, None, None)?;
    Ok(Some(super::compile::load_data(p, &dag, &metric)?))
}

/// The API key from `--api-key-file` or `LOOPC_API_KEY`, if any.
fn api_key(args: &ServeArgs) -> anyhow::Result<Option<ApiKey>> {
    let text = match &args.api_key_file {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("cannot read the API key file `{}`", path.display()))?),
        None => std::env::var("LOOPC_API_KEY").ok().filter(|k| !k.trim().is_empty()),
    };
    text.map(|t| ApiKey::new(&t).map_err(|e| anyhow::anyhow!("{e}"))).transpose()
}

/// The reviewers of `--reviewers-file`, if given.
fn reviewers(args: &ServeArgs) -> anyhow::Result<Reviewers> {
    let Some(path) = &args.reviewers_file else { return Ok(Reviewers::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the reviewers file `{}`", path.display()))?;
    Reviewers::parse(&text).map_err(|e| anyhow::anyhow!("the reviewers file `{}`, {e}", path.display()))
}

/// Resolves when SIGTERM or SIGINT (Ctrl-C) arrives.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    eprintln!("loopc serve: stopping; answering the requests in flight first");
}

/// Runs `loopc serve`.
pub fn run(args: &ServeArgs, color: bool) -> anyhow::Result<Outcome> {
    // Check first, so problems in the file show as diagnostics with carets.
    source::load(&args.file, color)?;
    let key = api_key(args)?;
    let addr: SocketAddr = args.addr.parse().with_context(|| format!("--addr `{}`: write HOST:PORT with an IP address, e.g. 127.0.0.1:8080", args.addr))?;
    // `serve::serve` refuses it too; checking first saves loading the model.
    serve::check_address(addr, key.as_ref())
        .map_err(|e| anyhow::anyhow!("--addr {e}.\nGive --api-key-file FILE (or set LOOPC_API_KEY), or listen on 127.0.0.1"))?;
    let holdout = holdout(args, color)?;
    let memory = MemoryOptions { enabled: !args.no_memory, reference: Arc::new(holdout.as_ref().map(|h| h.examples.clone()).unwrap_or_default()) };
    let options = ServeOptions {
        api_key: key,
        max_body: args.max_body,
        max_inflight: args.max_inflight.max(1),
        token_ttl: args.token_ttl,
        retain: args.retain_days.map(|d| Duration::from_secs(u64::from(d) * 86_400)),
        retention_every: Duration::from_secs(args.retention_interval.max(1)),
        drain_limit: Duration::from_secs(args.drain_seconds),
        learn: learn_loop(args, holdout.clone()),
        reviewers: reviewers(args)?,
        allow_origins: AllowedOrigins::new(&args.allow_origins).map_err(|e| anyhow::anyhow!("--allow-origin: {e}"))?,
    };
    let secret = match &args.token_secret_file {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read the token secret file `{}`", p.display()))?),
        None => None,
    };
    let engine = args.runtime.engine()?;
    let loaded = serve::load(&engine, &args.file, args.runtime.options()?)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let store = Store::open(&args.store.store).await?;
        let tokens = serve::token_key(&store, secret.as_deref()).await?;
        let service = Service::with_memory(loaded, store, memory).await?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let program = service.program().dag().name().to_string();
        match service.artifact_hash() {
            Some(h) => eprintln!("loopc serve: program `{program}` from artifact {}", &h[..h.len().min(12)]),
            None => eprintln!("loopc serve: program `{program}`"),
        }
        eprintln!("loopc serve: store {}", mask_password(&args.store.store));
        if let Some(m) = service.memory() {
            eprintln!("loopc serve: online memory on ({} inputs people corrected or approved; --no-memory to switch it off)", m.len());
        }
        if options.api_key.is_none() {
            eprintln!("loopc serve: no API key set (--api-key-file or LOOPC_API_KEY): listening on loopback only, every local caller is trusted");
        }
        // "listening on" comes last: scripts (and the tests) wait for it.
        if options.api_key.is_some() || args.reviewers_file.is_some() {
            eprintln!("loopc serve: review page on http://{local}/review");
        }
        eprintln!("loopc serve: listening on http://{local}");
        serve::serve(listener, service, tokens, options, shutdown_signal()).await.context("the server failed")?;
        eprintln!("loopc serve: stopped");
        anyhow::Ok(())
    })?;
    Ok(Outcome::Success)
}
