//! `GET /v1/widget.js`, the feedback widget a product page includes to show thumbs and a
//! "correct this" form under an answer, and the CORS that lets it post.
//!
//! The widget posts to `POST /v1/feedback` with the run's feedback token as `Authorization:
//! Bearer`, so the browser asks first (a preflight). Only origins given with `--allow-origin`
//! get an answer that lets it through, and only for the feedback route and the script: no
//! other route ever carries CORS headers, so no other site's page can read runs.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::serve::app::Shared;
use crate::serve::error::ApiError;

/// The widget, compiled in.
const WIDGET: &str = include_str!("assets/widget.js");

/// The routes a page on an allowed origin may call.
const CORS_ROUTES: [&str; 2] = ["/v1/feedback", "/v1/widget.js"];

/// The web origins (`scheme://host[:port]`) whose pages may post feedback from a browser.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    origins: Vec<String>,
}

/// Why an origin cannot be allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an origin: write scheme://host[:port], e.g. https://shop.example.com (no path, no `*`)")]
pub struct BadOrigin(pub String);

impl AllowedOrigins {
    /// The origins, each checked (`http` or `https`, a host, an optional port, nothing else).
    pub fn new<S: AsRef<str>>(origins: &[S]) -> Result<AllowedOrigins, BadOrigin> {
        let mut out = Vec::new();
        for o in origins {
            let o = o.as_ref().trim().trim_end_matches('/');
            let bad = || BadOrigin(o.chars().take(120).collect());
            let (scheme, authority) = o.split_once("://").ok_or_else(bad)?;
            let host_ok = !authority.is_empty() && authority.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
            if !matches!(scheme, "http" | "https") || !host_ok {
                return Err(bad());
            }
            out.push(o.to_ascii_lowercase());
        }
        Ok(AllowedOrigins { origins: out })
    }

    /// Whether a page from `origin` may call the widget's routes.
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

fn allow(response: &mut Response, origin: &str) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// CORS for the widget's routes: answers preflights from allowed origins, marks their answers,
/// and refuses cross-origin calls from anywhere else. Requests without an `Origin` (servers,
/// curl) and every other route pass untouched.
pub(crate) async fn cors(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !CORS_ROUTES.contains(&path) {
        return next.run(req).await;
    }
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string) else {
        return next.run(req).await;
    };
    let same_site = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).is_some_and(|h| origin.split_once("://").is_some_and(|(_, a)| a == h));
    if !app.allow_origins.allows(&origin) && !same_site {
        return ApiError::forbidden(format!("origin `{origin}` may not call this server from a browser (see --allow-origin)")).into_response();
    }
    if req.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        allow(&mut response, &origin);
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return response;
    }
    let mut response = next.run(req).await;
    allow(&mut response, &origin);
    response
}

/// `GET /v1/widget.js`: the script (no data in it, so no key needed).
pub(super) async fn script() -> Response {
    let mut response = WIDGET.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_host_only() {
        let o = AllowedOrigins::new(&["https://shop.example.com/", "http://localhost:3000"]).unwrap();
        assert!(o.allows("https://shop.example.com") && o.allows("http://localhost:3000"));
        assert!(!o.allows("https://evil.example.com") && !o.allows("http://shop.example.com"));
        for bad in ["*", "shop.example.com", "https://shop.example.com/path", "ftp://x", "https://"] {
            assert!(AllowedOrigins::new(&[bad]).is_err(), "{bad}");
        }
        assert!(!AllowedOrigins::default().allows("null"));
    }
}
