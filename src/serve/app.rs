//! The HTTP app: routes, handlers and the layers around them (authentication, body limit,
//! panics, request metrics, JSON errors). Handlers translate between HTTP and [`Service`];
//! everything they answer with an error status is `{"error": {"code", "message"}}`.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/run` | run the program, record the run, answer `{run_id, outputs, feedback_token}` |
//! | `POST /v1/feedback` | check and store feedback (the API key, or the run's feedback token) |
//! | `GET /v1/runs/{id}` | one run with its trace and feedback |
//! | `GET /v1/runs?since=&until=&limit=&after=&program=&artifact=&user_id=&order=` | a page of runs |
//! | `GET /healthz` | liveness (no key needed) |
//! | `GET /metrics` | Prometheus text |
//! | `/review…`, `GET /v1/widget.js` | the review page and the feedback widget (`review/`) |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body as HttpBody;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;

use super::auth::{authenticate, ApiKey, Caller};
use super::error::ApiError;
use super::feedback::FeedbackInput;
use super::metrics::Metrics;
use super::review::{self, AllowedOrigins, Reviewers};
use super::service::{RunFor, Service};
use super::token::TokenKey;
use super::view::run_json;
use crate::graph::IMPLICIT_SIGNALS;
use crate::runtime::executor::RunError;
use crate::store::{Consent, FeedbackSource, RunCursor, RunFilter, RunId, RunOrder, Timestamp};

/// What the handlers share.
pub(super) struct AppState {
    pub service: Service,
    pub tokens: TokenKey,
    pub api_key: Option<ApiKey>,
    pub token_ttl: Duration,
    pub max_inflight: usize,
    pub inflight: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    /// Who may sign in to the review page (besides the API key holder).
    pub reviewers: Reviewers,
    /// The origins whose pages may post feedback with the widget.
    pub allow_origins: AllowedOrigins,
}

pub(super) type Shared = Arc<AppState>;

/// The router with every route and layer.
pub(super) fn router(state: Shared, max_body: usize) -> Router {
    Router::new()
        .route("/v1/run", post(run))
        .route("/v1/feedback", post(feedback))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(show_run))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_caller))
        .route("/healthz", get(health))
        // The review page checks its own access (a session cookie or a reviewer's key).
        .merge(review::router(state.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), review::cors))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed on this request").into_response()
        }))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// Authenticates the caller and hands it to the handler as an extension. Without an API key
/// only loopback callers are served: the peer's address comes from axum's `ConnectInfo`
/// ([`super::serve`] provides it), and a router served without it refuses every keyless call
/// rather than trust callers it cannot place.
async fn require_caller(State(app): State<Shared>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).map(|h| h.to_str().unwrap_or("\u{0}"));
    match authenticate(header, app.api_key.as_ref(), &app.tokens, Timestamp::now()) {
        Ok(Caller::Local) if !from_loopback(&req) => {
            ApiError::forbidden("this server has no API key, so it answers callers on this machine (loopback) only").into_response()
        }
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Whether the request's peer is on a loopback address (false when the server did not say).
fn from_loopback(req: &Request) -> bool {
    req.extensions().get::<ConnectInfo<SocketAddr>>().is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback())
}

/// Counts every answer by route template and status.
async fn observe(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let response = next.run(req).await;
    app.metrics.request(&route, response.status().as_u16());
    response
}

/// Turns every error answer that is not already JSON (axum's own 405, a panic's 500, ...)
/// into `{"error": {"code", "message"}}`. The review page's own HTML error pages stay HTML:
/// people read those.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let kind = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let is_json = kind.starts_with("application/json");
    let is_page = kind.starts_with("text/html") && response.headers().contains_key(header::CONTENT_SECURITY_POLICY);
    if !(status.is_client_error() || status.is_server_error()) || is_json || is_page {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let mut fixed = ApiError::from_status(status, text).into_response();
    for (name, value) in parts.headers.iter().filter(|(n, _)| *n == header::RETRY_AFTER || *n == header::ALLOW) {
        fixed.headers_mut().insert(name.clone(), value.clone());
    }
    fixed
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found("not_found", format!("no route `{} {}`", req.method(), req.uri().path()))
}

/// A JSON body whose rejections (malformed JSON, wrong content type, too large) are
/// [`ApiError`]s with the parser's message.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let (status, code) = match &r {
        JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
        // Well-formed JSON of the wrong shape (an unknown or missing field): also a 400.
        JsonRejection::JsonDataError(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        JsonRejection::MissingJsonContentType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        _ => (r.status(), "bad_request"),
    };
    ApiError::new(status, code, r.body_text())
}

/// Refuses feedback-token callers on anything but feedback.
fn full_access(caller: &Caller, what: &str) -> Result<(), ApiError> {
    match caller {
        Caller::Token(run) => Err(ApiError::forbidden(format!("a feedback token allows only `POST /v1/feedback` on run `{run}`, not {what}"))),
        Caller::Key | Caller::Local => Ok(()),
    }
}

/// `POST /v1/run`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    inputs: Map<String, Value>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    consent: Option<bool>,
}

/// Decrements the in-flight gauge however the handler ends (a dropped connection included).
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.runs_in_flight().dec();
    }
}

async fn run(State(app): State<Shared>, Extension(caller): Extension<Caller>, Body(body): Body<RunBody>) -> Result<Response, ApiError> {
    full_access(&caller, "`POST /v1/run`")?;
    let _permit = app.inflight.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("{} runs are in flight, the most this server takes (--max-inflight); retry shortly", app.max_inflight),
        )
        .retry_after(1)
    })?;
    app.metrics.runs_in_flight().inc();
    let _in_flight = InFlight(&app.metrics);
    let consent = if body.consent == Some(false) { Consent::Denied } else { Consent::Given };
    let started = Instant::now();
    let served = app.service.run(body.inputs, RunFor { user_id: body.user_id, consent }).await?;
    app.metrics.run_took(started.elapsed().saturating_sub(served.store_time).as_secs_f64());
    app.metrics.store_write("run", served.store_time.as_secs_f64());
    let run_id = served.run_id.as_ref().map(|r| r.to_string());
    match served.outputs {
        Ok(outputs) => {
            let expires = Timestamp::now().plus(app.token_ttl);
            let token = served.run_id.as_ref().map(|id| app.tokens.issue(id, expires));
            let body = json!({
                "run_id": run_id,
                "outputs": outputs,
                "artifact": served.artifact,
                "feedback_token": token,
                "feedback_token_expires": token.as_ref().map(|_| expires.to_string()),
            });
            Ok((StatusCode::OK, Json(body)).into_response())
        }
        Err(e) => {
            let (status, code) = match e {
                RunError::StepTimeout { .. } | RunError::Deadline { .. } => (StatusCode::GATEWAY_TIMEOUT, "run_timeout"),
                _ => (StatusCode::BAD_GATEWAY, "run_failed"),
            };
            Err(ApiError::new(status, code, e.to_string()).with("run_id", run_id.into()))
        }
    }
}

/// `POST /v1/feedback`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    #[serde(default)]
    id: Option<String>,
    run_id: String,
    key: String,
    #[serde(default)]
    score: Option<Value>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    correction: Option<Value>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

async fn feedback(State(app): State<Shared>, Extension(caller): Extension<Caller>, Body(body): Body<FeedbackBody>) -> Result<Response, ApiError> {
    let run_id = RunId::parse(&body.run_id)?;
    let source = body.source.as_deref().map(str::parse::<FeedbackSource>).transpose()?;
    let source = match &caller {
        Caller::Token(allowed) => {
            if *allowed != run_id {
                return Err(ApiError::forbidden(format!("this feedback token is for run `{allowed}`, not `{run_id}`")));
            }
            match source {
                Some(s @ (FeedbackSource::User | FeedbackSource::Implicit)) => Some(s),
                Some(s) => return Err(ApiError::forbidden(format!("a feedback token sends feedback as `user` or `implicit`, not `{s}`"))),
                None if IMPLICIT_SIGNALS.contains(&body.key.as_str()) => None,
                None => Some(FeedbackSource::User),
            }
        }
        Caller::Key | Caller::Local => source,
    };
    let score = match body.score {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(if b { 1.0 } else { 0.0 }),
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => return Err(ApiError::bad_request("invalid_feedback", format!("`score` is a number (or true/false), not {other}"))),
    };
    let key = body.key.clone();
    let input = FeedbackInput {
        client_id: body.id,
        run_id: Some(run_id),
        key: body.key,
        score,
        value: body.value,
        correction: body.correction,
        comment: body.comment,
        source,
        user_id: body.user_id,
    };
    let started = Instant::now();
    let write = app.service.feedback(input).await?;
    app.metrics.store_write("feedback", started.elapsed().as_secs_f64());
    let status = if write.created {
        app.metrics.feedback_stored(&key);
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"id": write.id.as_str(), "created": write.created}))).into_response())
}

async fn show_run(State(app): State<Shared>, Extension(caller): Extension<Caller>, id: Result<Path<String>, PathRejection>) -> Result<Json<Value>, ApiError> {
    full_access(&caller, "reading runs")?;
    let Path(id) = id.map_err(|r| ApiError::bad_request("bad_request", r.body_text()))?;
    let id = RunId::parse(&id)?;
    let run = app.service.store().run(&id).await?.ok_or_else(|| ApiError::not_found("unknown_run", format!("run `{id}` is not in the store")))?;
    Ok(Json(run_json(&run, true)))
}

/// `GET /v1/runs` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
    program: Option<String>,
    artifact: Option<String>,
    user_id: Option<String>,
    order: Option<String>,
}

async fn list_runs(
    State(app): State<Shared>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    full_access(&caller, "listing runs")?;
    let Query(q) = query.map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))?;
    let time = |s: &Option<String>, name: &str| -> Result<Option<Timestamp>, ApiError> {
        s.as_deref().map(|t| t.parse::<Timestamp>().map_err(|e| ApiError::bad_request("invalid_query", format!("`{name}`: {e}")))).transpose()
    };
    let order = match q.order.as_deref() {
        None | Some("newest") => RunOrder::NewestFirst,
        Some("oldest") => RunOrder::OldestFirst,
        Some(other) => return Err(ApiError::bad_request("invalid_query", format!("`order` is `newest` or `oldest`, not `{other}`"))),
    };
    let filter = RunFilter {
        program: q.program,
        artifact_hash: q.artifact,
        user_id: q.user_id,
        since: time(&q.since, "since")?,
        until: time(&q.until, "until")?,
        limit: q.limit.unwrap_or(50),
        after: q.after.as_deref().map(str::parse::<RunCursor>).transpose()?,
        order,
    };
    let page = app.service.store().runs(&filter).await?;
    let runs: Vec<Value> = page.items.iter().map(|r| run_json(r, false)).collect();
    Ok(Json(json!({"runs": runs, "next": page.next.map(|c| c.to_string())})))
}

async fn health(State(app): State<Shared>) -> Json<Value> {
    let program = app.service.program().dag().name().to_string();
    Json(json!({"status": "ok", "program": program, "artifact": app.service.artifact_hash()}))
}

async fn metrics(State(app): State<Shared>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    full_access(&caller, "`GET /metrics`")?;
    let text = app.metrics.render(app.service.program().engine());
    let mut response = Response::new(HttpBody::from(text));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    Ok(response)
}
