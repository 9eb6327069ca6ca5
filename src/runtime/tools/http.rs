//! HTTP tools: one request per attempt, with retries and backoff on timeouts, connection
//! failures and 5xx answers; redirects only within the origin; bodies read up to `max_bytes`.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::{Action, Attempt, Policy};
use serde_json::{Map, Value};

use super::call::arg;
use super::error::{snippet, ToolError};
use super::{body, url};
use crate::graph::{ToolSpec, ToolTemplate};

/// Redirects followed in one request, as browsers and reqwest's default allow.
const MAX_REDIRECTS: usize = 10;

/// The bytes of an error answer kept for its message.
const ERROR_BODY_BYTES: u64 = 1024;

/// Follows a redirect only to the origin (scheme, host, port) of the URL first requested.
/// Any other redirect stops, and the request fails with [`ToolError::Redirect`]: the tool's
/// headers, which often carry an API key, never reach a server the `.loop` text did not name.
pub(super) fn redirect_policy() -> Policy {
    Policy::custom(same_origin_only)
}

fn same_origin_only(attempt: Attempt) -> Action {
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
    }
    let same = attempt.previous().first().is_some_and(|first| first.origin() == attempt.url().origin());
    if same {
        attempt.follow()
    } else {
        attempt.stop()
    }
}

/// Sends the request `spec` describes and returns the response body.
pub(super) async fn request(
    client: &reqwest::Client,
    spec: &ToolSpec,
    method: &str,
    url: &ToolTemplate,
    body: Option<&ToolTemplate>,
    headers: &[(String, ToolTemplate)],
    args: &Map<String, Value>,
) -> Result<String, ToolError> {
    let tool = spec.name.clone();
    let refuse = |reason: String| ToolError::Argument { tool: tool.clone(), reason };
    let url = url::build(url, |p| arg(args, p)).map_err(refuse)?;
    let body = body.map(|b| body::render(b, body::kind(b, headers), args)).transpose().map_err(refuse)?;
    let header_map = header_map(headers, args).map_err(refuse)?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| refuse(format!("bad method `{method}`")))?;
    let timeout = Duration::from_millis(spec.options.timeout_ms);
    let timed_out = |attempts| ToolError::Timeout { tool: tool.clone(), timeout_ms: spec.options.timeout_ms, attempts };
    let attempts = spec.options.retries.saturating_add(1);
    let mut last_err = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            // Exponential backoff with jitter: 100 ms, 200 ms, 400 ms ... plus up to 50%.
            let base = 100u64 << (attempt - 1).min(6);
            let jitter = rand::random::<u64>() % (base / 2 + 1);
            tokio::time::sleep(Duration::from_millis(base + jitter)).await;
        }
        let mut req = client.request(method.clone(), url.clone()).timeout(timeout).headers(header_map.clone());
        if let Some(b) = &body {
            req = req.body(b.clone());
        }
        let resp = match req.send().await {
            Err(e) if e.is_timeout() => {
                last_err = Some(timed_out(attempt + 1));
                continue;
            }
            Err(e) => {
                last_err = Some(ToolError::Unreachable { tool: tool.clone(), url: snippet(url.as_str(), 200), reason: root_cause(&e) });
                continue;
            }
            Ok(resp) => resp,
        };
        let status = resp.status();
        if status.is_redirection() {
            // The policy stopped here: the target is another origin.
            let location = resp.headers().get(reqwest::header::LOCATION).map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned()).unwrap_or_default();
            return Err(ToolError::Redirect { tool, location: snippet(&location, 200) });
        }
        let read = if status.is_success() {
            read_limited(resp, spec.options.max_bytes, Overflow::Fail).await
        } else {
            read_limited(resp, ERROR_BODY_BYTES.min(spec.options.max_bytes), Overflow::Cut).await
        };
        let text = match read {
            Ok(text) => text,
            Err(Failure::TooLarge) => return Err(ToolError::TooLarge { tool, limit: spec.options.max_bytes }),
            Err(Failure::TimedOut) => {
                last_err = Some(timed_out(attempt + 1));
                continue;
            }
            Err(Failure::Broken(reason)) => {
                last_err = Some(ToolError::Unreachable { tool: tool.clone(), url: snippet(url.as_str(), 200), reason });
                continue;
            }
        };
        if status.is_success() {
            return Ok(text);
        }
        let err = ToolError::Status { tool: tool.clone(), status: status.as_u16(), body: snippet(&text, 200) };
        if !status.is_server_error() {
            return Err(err);
        }
        last_err = Some(err);
    }
    Err(last_err.unwrap_or_else(|| timed_out(attempts)))
}

/// The tool's headers with values filled in as they are. A value can't add a header or end
/// the head: one with a line break, NUL or other control character is refused.
fn header_map(headers: &[(String, ToolTemplate)], args: &Map<String, Value>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let v = value.render(|p| arg(args, p));
        if v.contains(['\r', '\n', '\0']) {
            return Err(format!("header `{name}` would contain a line break or NUL"));
        }
        let v = HeaderValue::from_str(&v).map_err(|_| format!("header `{name}` would contain a control character"))?;
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("`{name}` is not a header name"))?;
        map.append(n, v);
    }
    Ok(map)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// What to do with a body longer than the limit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    /// Fail the call.
    Fail,
    /// Keep the first `limit` bytes (error answers, whose start is enough for a message).
    Cut,
}

/// Why a body could not be read.
enum Failure {
    TooLarge,
    TimedOut,
    Broken(String),
}

/// Reads the body, never holding more than `limit` bytes: a declared length over the limit
/// fails before anything is read, and a body (chunked or not) fails at the first chunk that
/// would pass it.
async fn read_limited(resp: reqwest::Response, limit: u64, overflow: Overflow) -> Result<String, Failure> {
    if overflow == Overflow::Fail && resp.content_length().is_some_and(|n| n > limit) {
        return Err(Failure::TooLarge);
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| if e.is_timeout() { Failure::TimedOut } else { Failure::Broken(root_cause(&e)) })?;
        let room = usize::try_from(limit.saturating_sub(body.len() as u64)).unwrap_or(usize::MAX);
        if chunk.len() > room {
            if overflow == Overflow::Fail {
                return Err(Failure::TooLarge);
            }
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
