//! Running the app: [`ServeOptions`], the token key, and [`serve`], which answers on a listener
//! until the shutdown future resolves, then stops taking connections, lets every request in
//! flight finish (runs, store writes), and closes the store. Retention (`--retain-days`) runs
//! as a background task beside it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::app::{router, AppState};
use super::auth::ApiKey;
use super::error::ServeError;
use super::learner::LearnLoop;
use super::metrics::Metrics;
use super::review::{AllowedOrigins, Reviewers};
use super::service::Service;
use super::token::{ShortKey, TokenKey};
use crate::store::{Store, StoreError, Timestamp};

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The API key callers must send; `None` serves anyone on this machine: [`serve`] then
    /// refuses a listener on any other than a loopback address, and answers loopback callers
    /// only.
    pub api_key: Option<ApiKey>,
    /// The largest request body, in bytes (larger: 413).
    pub max_body: usize,
    /// The most runs served at once (more: 503 with `Retry-After`).
    pub max_inflight: usize,
    /// How long a feedback token stays valid.
    pub token_ttl: Duration,
    /// Delete runs older than this, checked every `retention_every`.
    pub retain: Option<Duration>,
    /// How often retention runs.
    pub retention_every: Duration,
    /// After shutdown begins, how long requests in flight may take before the server stops
    /// anyway (a client that never finishes its request cannot hold it up forever).
    pub drain_limit: Duration,
    /// Learn in the background (`--learn-every`), and follow the store's current version.
    pub learn: Option<LearnLoop>,
    /// Who may sign in to the review page (`--reviewers-file`); the API key holder always may.
    pub reviewers: Reviewers,
    /// The origins whose pages may post feedback with the widget (`--allow-origin`).
    pub allow_origins: AllowedOrigins,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            api_key: None,
            max_body: 1 << 20,
            max_inflight: 64,
            token_ttl: Duration::from_secs(24 * 3600),
            retain: None,
            retention_every: Duration::from_secs(3600),
            drain_limit: Duration::from_secs(60),
            learn: None,
            reviewers: Reviewers::default(),
            allow_origins: AllowedOrigins::default(),
        }
    }
}

/// Why the token key cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    /// Occurs when the store cannot give its shared secret.
    #[error("cannot read or make the token key in the store: {0}")]
    Store(#[from] StoreError),
    /// Occurs when a given secret is too short.
    #[error("the token secret is unusable: {0}")]
    Short(#[from] ShortKey),
}

/// The secret's name in the store.
const TOKEN_SECRET: &str = "feedback_token_key";

/// The key feedback tokens are signed with: `secret` when given (e.g. a file's bytes, at least
/// 32), else the store's shared secret, made on first use, so every replica and restart on one
/// store accepts the tokens the others issued.
pub async fn token_key(store: &Store, secret: Option<&[u8]>) -> Result<TokenKey, TokenKeyError> {
    match secret {
        Some(s) => Ok(TokenKey::new(s)?),
        None => Ok(TokenKey::new(store.shared_secret(TOKEN_SECRET).await?.as_bytes())?),
    }
}

/// The app for `service`, and its metrics.
pub fn app(service: Service, tokens: TokenKey, options: &ServeOptions) -> (Router, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let max_inflight = options.max_inflight.max(1);
    let state = Arc::new(AppState {
        service,
        tokens,
        api_key: options.api_key.clone(),
        token_ttl: options.token_ttl,
        max_inflight,
        inflight: Arc::new(Semaphore::new(max_inflight)),
        metrics: metrics.clone(),
        reviewers: options.reviewers.clone(),
        allow_origins: options.allow_origins.clone(),
    });
    (router(state, options.max_body), metrics)
}

/// Whether a server with `api_key` may listen on `addr`: without a key, only on a loopback
/// address ([`ServeError::PublicWithoutKey`] otherwise). [`serve`] checks it; callers may check
/// it early, before loading a model.
pub fn check_address(addr: SocketAddr, api_key: Option<&ApiKey>) -> Result<(), ServeError> {
    if api_key.is_none() && !addr.ip().is_loopback() {
        return Err(ServeError::PublicWithoutKey { addr });
    }
    Ok(())
}

/// Serves `service` on `listener` until `shutdown` resolves; then drains: no new connections,
/// every request in flight answered (for at most `options.drain_limit`), retention stopped, the
/// store closed. Returns once all of that is done.
///
/// Without an API key, only a loopback listener is accepted ([`ServeError::PublicWithoutKey`]),
/// and only loopback callers are answered: a library caller cannot open the program and the
/// store to the network by leaving the key out.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    tokens: TokenKey,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    check_address(listener.local_addr()?, options.api_key.as_ref())?;
    let store = service.store().clone();
    let learner_service = service.clone();
    let (router, metrics) = app(service, tokens, &options);
    let retention = options.retain.map(|age| tokio::spawn(retain(store.clone(), age, options.retention_every, metrics.clone())));
    let learner = options.learn.clone().map(|l| {
        let engine = learner_service.program().engine().clone();
        tokio::spawn(super::learner::run(learner_service, engine, l, metrics))
    });
    let (began, draining) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = began.send(());
    };
    let server = std::future::IntoFuture::into_future(
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown),
    );
    let limit = async {
        match draining.await {
            Ok(()) => tokio::time::sleep(options.drain_limit).await,
            Err(_) => std::future::pending().await,
        }
    };
    let served = tokio::select! {
        served = server => served,
        () = limit => Ok(()),
    };
    for task in [retention, learner].into_iter().flatten() {
        task.abort();
        let _ = task.await;
    }
    store.close().await;
    Ok(served?)
}

/// Deletes runs older than `age` now and every `every`, counting what it removed (or that the
/// store failed) in the metrics.
async fn retain(store: Store, age: Duration, every: Duration, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    loop {
        tick.tick().await;
        let removed = store.expire(Timestamp::now().minus(age)).await;
        metrics.retention(removed.ok().map(|r| r.runs));
    }
}
