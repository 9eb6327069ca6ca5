//! Who may use the review page, and how they stay signed in.
//!
//! Reviewers sign in with a key: one of `--reviewers-file` (a `name key` per line), or the
//! server's API key (as the reviewer `api-key`). A sign-in sets a session cookie that is
//! HttpOnly and SameSite=Strict, and Secure when the request came through an https proxy
//! (`X-Forwarded-Proto: https`); on plain http (loopback) a Secure cookie would never come back.
//!
//! Sessions are stateless: the cookie is `lrs1.<reviewer>.<expiry ms>.<HMAC>`, signed with the
//! server's token key (the store's shared secret), so every replica on one store accepts it and
//! a restart keeps people signed in. A session names its reviewer, and the reviewer must still
//! be listed when it is used, so removing someone from the file ends their sessions. Each
//! session has its CSRF token (an HMAC of the cookie under a `csrf` prefix), which every form
//! carries; scripts may send `Authorization: Bearer KEY` instead of a cookie, and need none.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

use super::pages::{self, esc, Page};
use crate::serve::app::Shared;
use crate::serve::auth::ApiKey;
use crate::serve::token::TokenKey;
use crate::store::Timestamp;

/// The session cookie's name.
pub const COOKIE: &str = "loopc_review";

/// The prefix of a session cookie's value (its version).
const SESSION_PREFIX: &str = "lrs1";

/// How long a sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The reviewer name the API key signs in as.
pub const API_KEY_REVIEWER: &str = "api-key";

/// The people who may sign in to the review page, each with a key.
#[derive(Clone, Default)]
pub struct Reviewers {
    entries: Vec<(String, ApiKey)>,
}

impl std::fmt::Debug for Reviewers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: keys never reach a log.
        f.debug_list().entries(self.entries.iter().map(|(n, _)| n)).finish()
    }
}

/// Why a reviewers file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewersError {
    /// Occurs when a line is not `name key`.
    #[error("line {line}: expected `NAME KEY` (a name, a space, a key of 16 or more characters)")]
    Shape {
        /// The 1-based line.
        line: usize,
    },
    /// Occurs when a name has characters other than letters, digits, `_`, `-` and `.`.
    #[error("line {line}: the name `{name}` may use only letters, digits, `_`, `-` and `.` (at most 64)")]
    Name {
        /// The 1-based line.
        line: usize,
        /// The name.
        name: String,
    },
    /// Occurs when a name is listed twice or is the API key's reserved name.
    #[error("line {line}: the name `{name}` is taken")]
    Taken {
        /// The 1-based line.
        line: usize,
        /// The name.
        name: String,
    },
    /// Occurs when a key is unusable.
    #[error("line {line}: {reason}")]
    Key {
        /// The 1-based line.
        line: usize,
        /// Why.
        reason: String,
    },
    /// Occurs when the file lists nobody.
    #[error("the reviewers file lists nobody: write one `NAME KEY` per line")]
    Empty,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Reviewers {
    /// Reads a reviewers file: one `NAME KEY` per line; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Reviewers, ReviewersError> {
        let mut entries: Vec<(String, ApiKey)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut parts = l.split_whitespace();
            let (Some(name), Some(key), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(ReviewersError::Shape { line });
            };
            if !valid_name(name) {
                return Err(ReviewersError::Name { line, name: name.chars().take(80).collect() });
            }
            if name == API_KEY_REVIEWER || entries.iter().any(|(n, _)| n == name) {
                return Err(ReviewersError::Taken { line, name: name.to_string() });
            }
            let key = ApiKey::new(key).map_err(|e| ReviewersError::Key { line, reason: e.to_string() })?;
            entries.push((name.to_string(), key));
        }
        if entries.is_empty() {
            return Err(ReviewersError::Empty);
        }
        Ok(Reviewers { entries })
    }

    /// The reviewers' names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }
}

/// Who may sign in: the reviewers, and the API key holder.
pub(super) struct Access<'a> {
    pub reviewers: &'a Reviewers,
    pub api_key: Option<&'a ApiKey>,
}

impl Access<'_> {
    /// Whether anyone can sign in at all.
    pub fn enabled(&self) -> bool {
        !self.reviewers.entries.is_empty() || self.api_key.is_some()
    }

    /// The reviewer `key` belongs to. Every key is compared (in constant time each), so the
    /// time taken does not say which one matched.
    pub fn identify(&self, key: &str) -> Option<String> {
        let mut found = None;
        for (name, k) in &self.reviewers.entries {
            if k.matches(key) && found.is_none() {
                found = Some(name.clone());
            }
        }
        if self.api_key.is_some_and(|k| k.matches(key)) && found.is_none() {
            found = Some(API_KEY_REVIEWER.to_string());
        }
        found
    }

    /// Whether `name` may still use a session.
    pub fn listed(&self, name: &str) -> bool {
        if name == API_KEY_REVIEWER {
            return self.api_key.is_some();
        }
        self.reviewers.entries.iter().any(|(n, _)| n == name)
    }
}

/// A new session cookie value for `reviewer`, valid until `expires`.
fn session_value(tokens: &TokenKey, reviewer: &str, expires: Timestamp) -> String {
    let body = format!("{SESSION_PREFIX}.{reviewer}.{}", expires.millis());
    let tag = tokens.sign(&body);
    format!("{body}.{tag}")
}

/// The reviewer a session cookie value names, if this server signed it and it has not expired.
fn session_reviewer(tokens: &TokenKey, value: &str, now: Timestamp) -> Option<String> {
    let (body, tag) = value.rsplit_once('.')?;
    if !tokens.check(body, tag) {
        return None;
    }
    let (rest, expiry) = body.rsplit_once('.')?;
    let name = rest.strip_prefix(SESSION_PREFIX)?.strip_prefix('.')?;
    let expires = Timestamp::from_millis(expiry.parse().ok()?);
    (now <= expires && valid_name(name)).then(|| name.to_string())
}

/// The CSRF token of the session whose cookie value is `session`. It is derived, not stored:
/// only this server can compute it, and a page from another site cannot read it.
pub(super) fn csrf_token(tokens: &TokenKey, session: &str) -> String {
    tokens.sign(&format!("csrf.{session}"))[..32].to_string()
}

/// A signed-in reviewer, as handlers see them.
#[derive(Clone, Debug)]
pub(super) struct Reviewer {
    /// Their name (the user id their feedback is stored with).
    pub name: String,
    /// Their session's CSRF token; `None` for a Bearer caller, which needs none.
    pub csrf: Option<String>,
}

impl Reviewer {
    /// Whether a form post may go on: its CSRF token is the session's (a Bearer caller needs
    /// none). Compared in constant time.
    pub fn csrf_ok(&self, sent: Option<&str>) -> bool {
        let Some(expected) = &self.csrf else { return true };
        sent.is_some_and(|s| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), expected.as_bytes()).into())
    }
}

/// The answer to a form post without a valid CSRF token.
pub(super) fn csrf_refused() -> Response {
    pages::error_page(
        StatusCode::FORBIDDEN,
        "This form has no valid CSRF token",
        "The form was not sent from this review page (or it is older than your session). Reload the page and send it again.",
    )
}

/// The value of cookie `name` in `headers`, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Lets a request through only with a valid session cookie or a reviewer's (or the API) key as
/// `Authorization: Bearer`. Others are sent to the sign-in form (GET) or refused (anything
/// else); neither answer holds any data.
pub(super) async fn require_reviewer(State(app): State<Shared>, mut req: Request, next: Next) -> Response {
    let access = Access { reviewers: &app.reviewers, api_key: app.api_key.as_ref() };
    if !access.enabled() {
        return pages::error_page(
            StatusCode::NOT_FOUND,
            "The review page is off",
            "Start loopc serve with --reviewers-file FILE (one NAME KEY per line) or an API key to let reviewers sign in.",
        );
    }
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
    let reviewer = match bearer {
        Some(key) => access.identify(key).map(|name| Reviewer { name, csrf: None }),
        None => cookie(req.headers(), COOKIE).and_then(|value| {
            let name = session_reviewer(&app.tokens, value, Timestamp::now()).filter(|n| access.listed(n))?;
            Some(Reviewer { name, csrf: Some(csrf_token(&app.tokens, value)) })
        }),
    };
    match reviewer {
        Some(r) => {
            req.extensions_mut().insert(r);
            let mut response = next.run(req).await;
            // Pages hold stored data: no shared cache keeps them, no referrer leaks run ids.
            pages::private_headers(response.headers_mut());
            response
        }
        None if req.method() == Method::GET && bearer.is_none() => {
            let wanted = req.uri().path_and_query().map_or("/review", |p| p.as_str());
            let to = format!("/review/login?next={}", percent_encoding::utf8_percent_encode(wanted, percent_encoding::NON_ALPHANUMERIC));
            pages::redirect(&to)
        }
        None => {
            pages::error_page(StatusCode::UNAUTHORIZED, "Sign in first", "Sign in on /review/login, or send a reviewer's key as `Authorization: Bearer KEY`.")
        }
    }
}

/// Refuses a POST whose `Origin` is another site's: with SameSite=Strict cookies and CSRF
/// tokens this is a third lock, and the only one on the sign-in form (login CSRF).
pub(super) async fn same_origin_posts(req: Request, next: Next) -> Response {
    if req.method() == Method::POST {
        let headers = req.headers();
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if let Some(origin) = origin {
            let authority = origin.split_once("://").map(|(_, a)| a);
            if authority.is_none() || authority != host {
                return pages::error_page(StatusCode::FORBIDDEN, "Cross-site form refused", "This form was sent from another site.");
            }
        }
    }
    next.run(req).await
}

/// Where to go after signing in: only a path on this server's review page.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/review") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/review",
    }
}

/// `GET /review/login`.
pub(super) async fn login_form(Query(q): Query<HashMap<String, String>>) -> Response {
    login_page(StatusCode::OK, q.get("next").map(String::as_str), None)
}

fn login_page(status: StatusCode, next: Option<&str>, problem: Option<&str>) -> Response {
    let mut body = String::from("<main class=\"narrow\"><h1>Sign in to review</h1>");
    if let Some(p) = problem {
        body.push_str(&format!("<p class=\"problem\" role=\"alert\">{}</p>", esc(p)));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/review/login\" class=\"signin\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label for=\"key\">Your reviewer key</label>\
         <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\" class=\"primary\">Sign in</button></form>\
         <p class=\"hint\">Keys come from the server's <code>--reviewers-file</code> (or its API key).</p></main>",
        esc(safe_next(next))
    ));
    let mut response = Page::new("Sign in").body(body).render();
    *response.status_mut() = status;
    response
}

/// The sign-in form.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    key: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /review/login`: a valid key sets the session cookie and goes on to `next`.
pub(super) async fn login(State(app): State<Shared>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let access = Access { reviewers: &app.reviewers, api_key: app.api_key.as_ref() };
    let Some(name) = access.identify(form.key.trim()) else {
        return login_page(StatusCode::UNAUTHORIZED, form.next.as_deref(), Some("That key is not a reviewer's key."));
    };
    let value = session_value(&app.tokens, &name, Timestamp::now().plus(SESSION_TTL));
    let secure = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}", SESSION_TTL.as_secs(), if secure { "; Secure" } else { "" });
    let mut response = pages::redirect(safe_next(form.next.as_deref()));
    if let Ok(v) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// The sign-out form.
#[derive(Deserialize)]
pub(super) struct LogoutForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /review/logout`: clears the cookie (a stateless session cannot be revoked early;
/// removing the reviewer from the file does that).
pub(super) async fn logout(Extension(reviewer): Extension<Reviewer>, Form(form): Form<LogoutForm>) -> Response {
    if !reviewer.csrf_ok(form.csrf.as_deref()) {
        return csrf_refused();
    }
    let mut response = pages::redirect("/review/login");
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = clear.parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> TokenKey {
        TokenKey::new(&[9; 32]).unwrap()
    }

    #[test]
    fn a_reviewers_file_lists_names_with_keys_and_refuses_what_it_cannot_use() {
        let r = Reviewers::parse("# the team\nana  ana-key-0123456789abcdef\n\nbo bo-key-0123456789abcdef\n").unwrap();
        assert_eq!(r.names().collect::<Vec<_>>(), ["ana", "bo"]);
        assert_eq!(format!("{r:?}"), r#"["ana", "bo"]"#, "keys never print");
        assert_eq!(Reviewers::parse("ana").unwrap_err(), ReviewersError::Shape { line: 1 });
        assert_eq!(Reviewers::parse("\nana k1 k2").unwrap_err(), ReviewersError::Shape { line: 2 });
        assert!(matches!(Reviewers::parse("an@ ana-key-0123456789abcdef"), Err(ReviewersError::Name { line: 1, .. })));
        assert!(matches!(Reviewers::parse("ana short"), Err(ReviewersError::Key { line: 1, .. })));
        let twice = "ana ana-key-0123456789abcdef\nana other-key-0123456789ab";
        assert_eq!(Reviewers::parse(twice).unwrap_err(), ReviewersError::Taken { line: 2, name: "ana".into() });
        assert!(matches!(Reviewers::parse("api-key ana-key-0123456789abcdef"), Err(ReviewersError::Taken { .. })));
        assert_eq!(Reviewers::parse("# nobody\n").unwrap_err(), ReviewersError::Empty);
    }

    #[test]
    fn keys_identify_their_reviewer_and_the_api_key_signs_in_as_api_key() {
        let r = Reviewers::parse("ana ana-key-0123456789abcdef\nbo bo-key-0123456789abcdef").unwrap();
        let api = ApiKey::new("the-api-key-0123456789").unwrap();
        let access = Access { reviewers: &r, api_key: Some(&api) };
        assert_eq!(access.identify("bo-key-0123456789abcdef").as_deref(), Some("bo"));
        assert_eq!(access.identify("the-api-key-0123456789").as_deref(), Some(API_KEY_REVIEWER));
        assert_eq!(access.identify("nobody-0123456789abcdef"), None);
        assert!(access.listed("ana") && access.listed(API_KEY_REVIEWER) && !access.listed("cy"));
        let none = Reviewers::default();
        assert!(!Access { reviewers: &none, api_key: None }.enabled());
        assert!(!Access { reviewers: &none, api_key: None }.listed(API_KEY_REVIEWER));
    }

    #[test]
    fn a_session_names_its_reviewer_until_it_expires_and_cannot_be_altered() {
        let t0 = Timestamp::from_millis(1_000_000);
        let value = session_value(&tokens(), "ana", t0.plus(Duration::from_secs(60)));
        assert_eq!(session_reviewer(&tokens(), &value, t0).as_deref(), Some("ana"));
        assert_eq!(session_reviewer(&tokens(), &value, t0.plus(Duration::from_secs(61))), None, "expired");
        assert_eq!(session_reviewer(&TokenKey::new(&[8; 32]).unwrap(), &value, t0), None, "another server's key");
        assert_eq!(session_reviewer(&tokens(), &value.replacen(".ana.", ".bo.", 1), t0), None, "another name");
        let feedback_token = tokens().issue(&crate::store::RunId::generate(), t0.plus(Duration::from_secs(60)));
        assert_eq!(session_reviewer(&tokens(), &feedback_token, t0), None, "a feedback token is no session");
        assert_ne!(csrf_token(&tokens(), &value), csrf_token(&tokens(), &session_value(&tokens(), "ana", t0)));
        assert_eq!(csrf_token(&tokens(), &value).len(), 32);
    }

    #[test]
    fn only_review_paths_are_followed_after_signing_in() {
        assert_eq!(safe_next(Some("/review/run/r1?program=a")), "/review/run/r1?program=a");
        for bad in ["https://evil.example/", "//evil.example", "/v1/runs", "/review\\..\\x"] {
            assert_eq!(safe_next(Some(bad)), "/review", "{bad}");
        }
        assert_eq!(safe_next(None), "/review");
    }
}
