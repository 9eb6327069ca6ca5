//! The entry point for tool calls, and the HTTP client they share.

use serde_json::{Map, Value};

use super::error::ToolError;
use super::{command, http};
use crate::graph::{ToolKind, ToolSpec};
use crate::runtime::value::{coerce, render};

/// The HTTP client tool calls share (connection pool, TLS), with loopc's redirect policy:
/// redirects are followed only within the origin of the URL the tool asked for.
#[derive(Clone, Debug)]
pub struct ToolClient {
    http: reqwest::Client,
}

impl ToolClient {
    /// A client with the same-origin redirect policy.
    pub fn new() -> ToolClient {
        let builder = reqwest::Client::builder().redirect(http::redirect_policy());
        // `reqwest::Client::new()` panics in exactly this case (no TLS backend or resolver
        // configuration); the redirect policy adds no way to fail.
        let http = builder.build().expect("the HTTP client for tools can be built");
        ToolClient { http }
    }
}

impl Default for ToolClient {
    fn default() -> Self {
        ToolClient::new()
    }
}

/// Calls `spec` with `args` (values by parameter name).
pub async fn call(client: &ToolClient, spec: &ToolSpec, args: &Map<String, Value>) -> Result<Value, ToolError> {
    let text = match &spec.kind {
        ToolKind::Http { method, url, body, headers } => http::request(&client.http, spec, method, url, body.as_ref(), headers, args).await?,
        ToolKind::Command { argv, stdin, env } => command::run(spec, argv, stdin.as_ref(), env, args).await?,
    };
    coerce(&spec.returns, &text).map_err(|reason| ToolError::Output { tool: spec.name.clone(), expected: spec.returns.to_string(), reason })
}

/// The text of argument `name` (empty when it is missing).
pub(super) fn arg(args: &Map<String, Value>, name: &str) -> String {
    args.get(name).map(render).unwrap_or_default()
}
