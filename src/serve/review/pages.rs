//! The frame every review page shares (head, navigation, sign-out), HTML escaping, redirects,
//! error pages and the embedded assets. Pages are strings built here rather than templates:
//! there are few of them, and every value inserted goes through [`esc`].

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::Reviewer;

/// The stylesheet, script and widget, compiled in.
const CSS: &str = include_str!("assets/review.css");
const JS: &str = include_str!("assets/review.js");

/// The Content-Security-Policy of every page: nothing but this server's own assets, no inline
/// script (the script is a file), no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML content and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Which part of the review page is shown (highlighted in the navigation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The queue and its runs.
    Queue,
    /// The dashboard.
    Dashboard,
    /// Neither (sign-in, errors).
    None,
}

/// A page: its title, who is signed in, and its body.
pub struct Page<'a> {
    title: String,
    reviewer: Option<&'a Reviewer>,
    section: Section,
    body: String,
}

impl<'a> Page<'a> {
    /// A page titled `title` (shown after "loopc review").
    pub fn new(title: &str) -> Page<'a> {
        Page { title: title.to_string(), reviewer: None, section: Section::None, body: String::new() }
    }

    /// Shows the navigation for `reviewer`, with `section` highlighted.
    pub fn signed_in(mut self, reviewer: &'a Reviewer, section: Section) -> Page<'a> {
        self.reviewer = Some(reviewer);
        self.section = section;
        self
    }

    /// The page's main content (HTML).
    pub fn body(mut self, html: String) -> Page<'a> {
        self.body = html;
        self
    }

    /// The whole document as an HTML answer.
    pub fn render(self) -> Response {
        let mut html = String::with_capacity(self.body.len() + 1024);
        html.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
        html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        html.push_str(&format!("<title>{} · loopc review</title>", esc(&self.title)));
        html.push_str("<link rel=\"stylesheet\" href=\"/review/assets/review.css\"><script src=\"/review/assets/review.js\" defer></script></head><body>");
        html.push_str("<header class=\"top\"><a class=\"brand\" href=\"/review\">loopc review</a>");
        if let Some(r) = self.reviewer {
            let tab = |href: &str, label: &str, section: Section| {
                let current = if section == self.section { " aria-current=\"page\"" } else { "" };
                format!("<a href=\"{href}\"{current}>{label}</a>")
            };
            html.push_str("<nav>");
            html.push_str(&tab("/review", "Queue", Section::Queue));
            html.push_str(&tab("/review/dashboard", "Dashboard", Section::Dashboard));
            html.push_str("</nav>");
            html.push_str(&format!("<span class=\"who\">{}</span>", esc(&r.name)));
            if let Some(csrf) = &r.csrf {
                html.push_str(&format!(
                    "<form method=\"post\" action=\"/review/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                     <button type=\"submit\" class=\"link\">Sign out</button></form>",
                    esc(csrf)
                ));
            }
        }
        html.push_str("</header>");
        html.push_str(&self.body);
        html.push_str("</body></html>");
        html_response(StatusCode::OK, html)
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Headers for answers that hold stored data: never cached, no referrer (with its run ids) sent
/// to other sites. Not `no-referrer`: under it, browsers send `Origin: null` on form posts,
/// which the same-origin check must refuse.
pub fn private_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// A page saying what went wrong, with `status`.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!("<main class=\"narrow\"><h1>{}</h1><p>{}</p><p><a href=\"/review\">Back to the queue</a></p></main>", esc(title), esc(message));
    let mut response = Page::new(title).body(body).render();
    *response.status_mut() = status;
    response
}

/// A 303 to `to` (after a form post, so reloading does not post again).
pub fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// `GET /review/assets/{name}`: the stylesheet and the script. They hold no data, so the
/// sign-in page may use them too.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "review.css" => (CSS, "text/css; charset=utf-8"),
        "review.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return error_page(StatusCode::NOT_FOUND, "No such asset", "The review page has review.css and review.js."),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

/// Text cut to `max` characters, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A JSON value as short text: strings bare, everything else as JSON.
pub fn brief(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A time as `YYYY-MM-DD HH:MM` (UTC).
pub fn when(t: crate::store::Timestamp) -> String {
    let text = t.to_string();
    text.get(..16).map_or(text.clone(), |s| s.replace('T', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(esc(r#"<a href="x" onclick='y'>&</a>"#), "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
        assert_eq!(clip("héllo wörld", 5), "héllo…");
        assert_eq!(clip("short", 10), "short");
    }
}
