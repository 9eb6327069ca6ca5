//! `loopc serve`: load the program, open the store, listen, and serve until SIGTERM or Ctrl-C,
//! then drain (requests in flight are answered) and exit 0.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use loopc::serve::{self, AllowedOrigins, ApiKey, LearnLoop, Reporter, Reviewers, ServeOptions, Service, Trigger};
use loopc::store::{mask_password, Store};

use super::args::ServeArgs;
use super::{source, Outcome};

/// Reads a duration written as `90s`, `30m`, `24h`, `7d` (or plain seconds).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = number.parse().with_context(|| format!("`{text}` is not a duration: write e.g. 90s, 30m, 24h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => anyhow::bail!("`{text}` is not a duration: write e.g. 90s, 30m, 24h or 7d"),
    };
    anyhow::ensure!(secs > 0, "a duration must be longer than zero");
    Ok(Duration::from_secs(secs))
}

/// The background learner of `--learn-every`, if asked for.
fn learn_loop(args: &ServeArgs, color: bool) -> anyhow::Result<Option<LearnLoop>> {
    let Some(every) = &args.learn_every else { return Ok(None) };
    let trigger = match every.trim().parse::<u64>() {
        Ok(0) => anyhow::bail!("--learn-every 0: give a number of runs above zero, or a duration such as 6h"),
        Ok(n) => Trigger::Runs(n),
        Err(_) => Trigger::Every(parse_duration(every).context("--learn-every: give a number of runs (e.g. 500) or a duration (e.g. 6h)")?),
    };
    let share = super::learn::share;
    anyhow::ensure!(args.margin.is_finite() && args.margin >= 0.0, "--margin must be a score difference of 0 or more");
    let holdout = match &args.holdout {
        Some(p) => {
            let loaded = source::load(&args.file, color)?;
            let dag = loaded.dag;
            let metric = super::compile::pick_metric(&dag, None, None)?;
            Some(super::compile::load_data(p, &dag, &metric)?)
        }
        None => None,
    };
    let mut l = LearnLoop::new(trigger);
    l.holdout = holdout;
    l.holdout_share = share("--holdout-share", args.holdout_share)?;
    l.margin = args.margin;
    l.explore = args.explore.map(|e| share("--explore", e)).transpose()?;
    l.canary_runs = args.canary_runs.max(1);
    l.canary_margin = share("--canary-margin", args.canary_margin)?;
    l.poll = parse_duration(&args.learn_poll).context("--learn-poll")?;
    l.max_rows = args.max_rows.max(1);
    l.report = Reporter::new(|outcome| match outcome {
        Ok(what) => eprintln!("loopc serve: learner: {what}"),
        Err(e) => eprintln!("loopc serve: learner failed: {e}"),
    });
    Ok(Some(l))
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
    if key.is_none() && !addr.ip().is_loopback() {
        anyhow::bail!(
            "--addr {addr} is not a loopback address, and no API key is set: anyone who can reach it could run the program and read every stored run.\n\
             Give --api-key-file FILE (or set LOOPC_API_KEY), or listen on 127.0.0.1"
        );
    }
    let options = ServeOptions {
        api_key: key,
        max_body: args.max_body,
        max_inflight: args.max_inflight.max(1),
        token_ttl: parse_duration(&args.token_ttl).context("--token-ttl")?,
        retain: args.retain_days.map(|d| Duration::from_secs(u64::from(d) * 86_400)),
        retention_every: Duration::from_secs(args.retention_interval.max(1)),
        drain_limit: Duration::from_secs(args.drain_seconds),
        learn: learn_loop(args, color)?,
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
        let service = Service::new(loaded, store).await?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let program = service.program().dag().name().to_string();
        match service.artifact_hash() {
            Some(h) => eprintln!("loopc serve: program `{program}` from artifact {}", &h[..h.len().min(12)]),
            None => eprintln!("loopc serve: program `{program}`"),
        }
        eprintln!("loopc serve: store {}", mask_password(&args.store.store));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        for bad in ["", "h", "5w", "0s", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
