//! Runs tools: HTTP requests (through reqwest) and local commands (an argument vector, never
//! a shell), each with a timeout and a size limit, HTTP with retries and backoff on timeouts,
//! connection failures and 5xx answers. The result is read as the tool's declared type.

use std::time::Duration;

use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::value::{coerce, render};
use crate::graph::{Template, ToolKind, ToolSpec};

/// Why a tool call failed. Each variant names the tool.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Occurs when every attempt ran out of time.
    #[error("tool `{tool}` timed out after {timeout_ms} ms ({attempts} attempt(s))")]
    Timeout {
        /// The tool.
        tool: String,
        /// The per-attempt timeout.
        timeout_ms: u64,
        /// Attempts made.
        attempts: u32,
    },
    /// Occurs when the endpoint cannot be reached.
    #[error("tool `{tool}` cannot reach `{url}`: {reason}")]
    Unreachable {
        /// The tool.
        tool: String,
        /// The URL tried.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// Occurs when the endpoint answers with an error status.
    #[error("tool `{tool}` got HTTP {status}: {body}")]
    Status {
        /// The tool.
        tool: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// Occurs when the response or output exceeds `max_bytes`.
    #[error("tool `{tool}` returned more than {limit} bytes")]
    TooLarge {
        /// The tool.
        tool: String,
        /// The limit.
        limit: u64,
    },
    /// Occurs when a command cannot start.
    #[error("tool `{tool}` cannot run `{program}`: {reason}")]
    Spawn {
        /// The tool.
        tool: String,
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// Occurs when a command exits unsuccessfully.
    #[error("tool `{tool}` exited with {status}: {stderr}")]
    Exit {
        /// The tool.
        tool: String,
        /// The exit status.
        status: String,
        /// The start of its standard error.
        stderr: String,
    },
    /// Occurs when the output is not a value of the declared type.
    #[error("tool `{tool}` returned a value that is not {expected}: {reason}")]
    Output {
        /// The tool.
        tool: String,
        /// The declared type.
        expected: String,
        /// What was wrong.
        reason: String,
    },
    /// Occurs when an argument cannot be placed in the request (e.g. a newline in a header).
    #[error("tool `{tool}`: {reason}")]
    Argument {
        /// The tool.
        tool: String,
        /// What was wrong.
        reason: String,
    },
}

/// Calls `spec` with `args` (values by parameter name).
pub async fn call(client: &reqwest::Client, spec: &ToolSpec, args: &Map<String, Value>) -> Result<Value, ToolError> {
    let text = match &spec.kind {
        ToolKind::Http { method, url, body, headers } => http(client, spec, method, url, body.as_ref(), headers, args).await?,
        ToolKind::Command { argv, stdin } => command(spec, argv, stdin.as_ref(), args).await?,
    };
    coerce(&spec.returns, &text).map_err(|reason| ToolError::Output { tool: spec.name.clone(), expected: spec.returns.to_string(), reason })
}

fn arg(args: &Map<String, Value>, name: &str) -> String {
    args.get(name).map(render).unwrap_or_default()
}

/// JSON-escapes a value for a body template that is JSON (the template supplies the quotes).
fn json_escaped(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

async fn http(
    client: &reqwest::Client,
    spec: &ToolSpec,
    method: &str,
    url: &Template,
    body: Option<&Template>,
    headers: &[(String, Template)],
    args: &Map<String, Value>,
) -> Result<String, ToolError> {
    let tool = spec.name.clone();
    let url = url.render(|p| utf8_percent_encode(&arg(args, p), NON_ALPHANUMERIC).to_string());
    let body = body.map(|b| {
        let json_like = b.segments.iter().find_map(|s| match s {
            crate::graph::Segment::Text(t) => t.trim_start().chars().next(),
            crate::graph::Segment::Param(_) => None,
        });
        let json = matches!(json_like, Some('{') | Some('['));
        b.render(|p| if json { json_escaped(&arg(args, p)) } else { arg(args, p) })
    });
    let mut rendered_headers = Vec::new();
    for (name, value) in headers {
        let v = value.render(|p| arg(args, p));
        if v.contains(['\r', '\n']) {
            return Err(ToolError::Argument { tool, reason: format!("header `{name}` would contain a line break") });
        }
        rendered_headers.push((name.clone(), v));
    }
    let method =
        reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| ToolError::Argument { tool: tool.clone(), reason: format!("bad method `{method}`") })?;
    let timeout = Duration::from_millis(spec.options.timeout_ms);
    let attempts = spec.options.retries + 1;
    let mut last_err = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            // Exponential backoff with jitter: 100 ms, 200 ms, 400 ms ... plus up to 50%.
            let base = 100u64 << (attempt - 1).min(6);
            let jitter = rand::random::<u64>() % (base / 2 + 1);
            tokio::time::sleep(Duration::from_millis(base + jitter)).await;
        }
        let mut req = client.request(method.clone(), &url).timeout(timeout);
        for (n, v) in &rendered_headers {
            req = req.header(n.as_str(), v.as_str());
        }
        if let Some(b) = &body {
            req = req.body(b.clone());
        }
        match req.send().await {
            Err(e) if e.is_timeout() => last_err = Some(ToolError::Timeout { tool: tool.clone(), timeout_ms: spec.options.timeout_ms, attempts: attempt + 1 }),
            Err(e) => last_err = Some(ToolError::Unreachable { tool: tool.clone(), url: url.clone(), reason: root_cause(&e) }),
            Ok(resp) => {
                let status = resp.status();
                let text = read_limited(resp, spec.options.max_bytes, &tool).await;
                match text {
                    Err(ToolError::Timeout { .. }) => {
                        last_err = Some(ToolError::Timeout { tool: tool.clone(), timeout_ms: spec.options.timeout_ms, attempts: attempt + 1 })
                    }
                    Err(e) => return Err(e),
                    Ok(text) if status.is_success() => return Ok(text),
                    Ok(text) => {
                        let err = ToolError::Status { tool: tool.clone(), status: status.as_u16(), body: text.chars().take(200).collect() };
                        if !status.is_server_error() {
                            return Err(err);
                        }
                        last_err = Some(err);
                    }
                }
            }
        }
    }
    Err(last_err.unwrap_or(ToolError::Timeout { tool, timeout_ms: spec.options.timeout_ms, attempts }))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

async fn read_limited(resp: reqwest::Response, limit: u64, tool: &str) -> Result<String, ToolError> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if e.is_timeout() {
                ToolError::Timeout { tool: tool.to_string(), timeout_ms: 0, attempts: 1 }
            } else {
                ToolError::Unreachable { tool: tool.to_string(), url: String::new(), reason: root_cause(&e) }
            }
        })?;
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(ToolError::TooLarge { tool: tool.to_string(), limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn command(spec: &ToolSpec, argv: &[Template], stdin: Option<&Template>, args: &Map<String, Value>) -> Result<String, ToolError> {
    let tool = spec.name.clone();
    let argv: Vec<String> = argv.iter().map(|t| t.render(|p| arg(args, p))).collect();
    let Some((program, rest)) = argv.split_first() else {
        return Err(ToolError::Argument { tool, reason: "the argument list is empty".into() });
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest)
        .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| ToolError::Spawn { tool: tool.clone(), program: program.clone(), reason: e.to_string() })?;
    let input = stdin.map(|t| t.render(|p| arg(args, p)));
    let limit = spec.options.max_bytes;
    let run = async {
        if let (Some(text), Some(mut pipe)) = (input, child.stdin.take()) {
            // A program that exits without reading its input is not an error of the tool call.
            let _ = pipe.write_all(text.as_bytes()).await;
        }
        let mut out = Vec::new();
        let mut stdout = child.stdout.take().ok_or_else(|| ToolError::Spawn { tool: tool.clone(), program: program.clone(), reason: "no stdout".into() })?;
        let mut buf = [0u8; 8192];
        loop {
            let n = stdout.read(&mut buf).await.map_err(|e| ToolError::Spawn { tool: tool.clone(), program: program.clone(), reason: e.to_string() })?;
            if n == 0 {
                break;
            }
            if out.len() as u64 + n as u64 > limit {
                return Err(ToolError::TooLarge { tool: tool.clone(), limit });
            }
            out.extend_from_slice(&buf[..n]);
        }
        let mut err = Vec::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_end(&mut err).await;
        }
        let status = child.wait().await.map_err(|e| ToolError::Spawn { tool: tool.clone(), program: program.clone(), reason: e.to_string() })?;
        if !status.success() {
            return Err(ToolError::Exit { tool: tool.clone(), status: status.to_string(), stderr: String::from_utf8_lossy(&err).chars().take(200).collect() });
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(Duration::from_millis(spec.options.timeout_ms), run).await {
        Ok(result) => result,
        // Dropping the future drops the child, which kills it (kill_on_drop).
        Err(_) => Err(ToolError::Timeout { tool, timeout_ms: spec.options.timeout_ms, attempts: 1 }),
    }
}
