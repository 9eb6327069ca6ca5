//! The queue and one run at a time: the list of runs to review (filters, keyset pages), the run
//! page (inputs, outputs, the folded trace, the feedback given so far) with its correction form,
//! and the form's post, which stores the reviewer's feedback through [`Service::feedback`] and
//! moves on to the next run.
//!
//! [`Service::feedback`]: crate::serve::Service::feedback

use std::fmt::Write as _;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::Reviewer;
use super::form::{self, Submission};
use super::pages::{self, brief, clip, esc, when, Page, Section};
use crate::graph::{Dag, FeedbackKind};
use crate::serve::app::Shared;
use crate::store::{ReviewCounts, ReviewCursor, ReviewFilter, ReviewItem, RunId, StoredRun, Timestamp, COUNT_CAP};

/// Runs per queue page.
const PAGE: usize = 50;

/// The filters of the queue, as they come in a URL. A missing `program` means the served
/// program's runs; an empty one means every program's.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct QueueQuery {
    #[serde(default)]
    program: Option<String>,
    #[serde(default)]
    artifact: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// The filters read and checked: the store's filter, the cursor, and the filter part of URLs.
struct Filters {
    filter: ReviewFilter,
    after: Option<ReviewCursor>,
    /// `program=…&…` (no cursor), to carry the filters from page to page.
    query: String,
    /// The values as given, for the filter form.
    given: QueueQuery,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Filters {
    fn read(q: QueueQuery, dag: &Dag) -> Result<Filters, String> {
        let time = |s: &Option<String>, name: &str| non_empty(s).map(|t| t.parse::<Timestamp>().map_err(|e| format!("{name}: {e}"))).transpose();
        let program = match &q.program {
            None => Some(dag.name().to_string()),
            Some(p) => non_empty(&Some(p.clone())).map(str::to_string),
        };
        let negative_keys = dag.feedback().iter().filter(|f| f.kind == FeedbackKind::Bool).map(|f| f.name.clone()).collect();
        let filter = ReviewFilter {
            program: program.clone(),
            artifact_hash: non_empty(&q.artifact).map(str::to_string),
            key: non_empty(&q.key).map(str::to_string),
            since: time(&q.since, "since")?,
            until: time(&q.until, "before")?,
            negative_keys,
            ..ReviewFilter::default()
        };
        let after = non_empty(&q.after).map(|a| a.parse::<ReviewCursor>().map_err(|e| e.to_string())).transpose()?;
        let mut query = String::new();
        let mut add = |name: &str, value: &str| {
            let _ = write!(query, "{}{name}={}", if query.is_empty() { "" } else { "&" }, utf8_percent_encode(value, NON_ALPHANUMERIC));
        };
        add("program", program.as_deref().unwrap_or(""));
        for (name, value) in [("artifact", &q.artifact), ("key", &q.key), ("since", &q.since), ("until", &q.until)] {
            if let Some(v) = non_empty(value) {
                add(name, v);
            }
        }
        Ok(Filters { filter, after, query, given: q })
    }

    /// A URL of `path` with the filters and, when given, a cursor.
    fn url(&self, path: &str, after: Option<&ReviewCursor>) -> String {
        let mut url = format!("{path}?{}", self.query);
        if let Some(c) = after {
            let _ = write!(url, "&after={}", utf8_percent_encode(&c.to_string(), NON_ALPHANUMERIC));
        }
        url
    }
}

fn bad_filter(message: String) -> Response {
    pages::error_page(StatusCode::BAD_REQUEST, "These filters do not work", &message)
}

fn store_failed(e: impl std::fmt::Display) -> Response {
    pages::error_page(StatusCode::SERVICE_UNAVAILABLE, "The store did not answer", &e.to_string())
}

/// `GET /review`: the counts, the filters and a page of the queue.
pub(super) async fn list(State(app): State<Shared>, Extension(reviewer): Extension<Reviewer>, Query(q): Query<QueueQuery>) -> Response {
    let program = app.service.program();
    let done = q.done.is_some();
    let f = match Filters::read(q, program.dag()) {
        Ok(f) => f,
        Err(e) => return bad_filter(e),
    };
    let store = app.service.store();
    let (items, counts) = match tokio::try_join!(store.review_queue(&f.filter, f.after.as_ref(), PAGE), store.review_counts(&f.filter)) {
        Ok(v) => v,
        Err(e) => return store_failed(e),
    };
    let mut body = String::from("<main><h1>Review queue</h1>");
    if done {
        body.push_str("<p class=\"notice\" role=\"status\">Nothing left to review under these filters.</p>");
    }
    body.push_str(&counts_line(&counts));
    body.push_str(&filter_form(&f));
    if !items.is_empty() {
        let _ = write!(body, "<p><a class=\"button primary\" id=\"start\" href=\"{}\">Start reviewing</a></p>", esc(&f.url("/review/next", None)));
    }
    body.push_str(&queue_list(&f, &items));
    if items.len() == PAGE {
        if let Some(last) = items.last() {
            let _ = write!(body, "<p><a class=\"button\" rel=\"next\" href=\"{}\">Next page</a></p>", esc(&f.url("/review", Some(&last.cursor))));
        }
    }
    body.push_str("</main>");
    Page::new("Queue").signed_in(&reviewer, Section::Queue).body(body).render()
}

fn count_text(n: u64) -> String {
    if n >= COUNT_CAP {
        format!("{n}+")
    } else {
        n.to_string()
    }
}

fn counts_line(c: &ReviewCounts) -> String {
    format!(
        "<ul class=\"counts\"><li><span class=\"tier tier-flagged\">flagged</span> {}</li><li><span class=\"tier tier-unsure\">unsure</span> {}</li>\
         <li><span class=\"tier tier-sample\">sample</span> {}</li><li><span class=\"tier tier-done\">reviewed</span> {}</li></ul>",
        count_text(c.flagged),
        count_text(c.unsure),
        count_text(c.sample),
        count_text(c.reviewed)
    )
}

fn filter_form(f: &Filters) -> String {
    let v = |s: &Option<String>| esc(s.as_deref().unwrap_or(""));
    let program = f.filter.program.as_deref().unwrap_or("");
    format!(
        "<details class=\"filters\"{open}><summary>Filters</summary><form method=\"get\" action=\"/review\">\
         <label>Program <input name=\"program\" value=\"{program}\" placeholder=\"every program\"></label>\
         <label>Artifact <input name=\"artifact\" value=\"{artifact}\" placeholder=\"any version\"></label>\
         <label>Has feedback <input name=\"key\" value=\"{key}\" placeholder=\"any key\"></label>\
         <label>Since <input name=\"since\" type=\"date\" value=\"{since}\"></label>\
         <label>Before <input name=\"until\" type=\"date\" value=\"{until}\"></label>\
         <button type=\"submit\">Apply</button></form></details>",
        open = if f.given.artifact.is_some() || f.given.key.is_some() || f.given.since.is_some() || f.given.until.is_some() { " open" } else { "" },
        program = esc(program),
        artifact = v(&f.given.artifact),
        key = v(&f.given.key),
        since = v(&f.given.since),
        until = v(&f.given.until),
    )
}

/// A one-line summary of a JSON object's fields.
fn summary(value: Option<&Value>, max: usize) -> String {
    match value {
        Some(Value::Object(m)) => clip(&m.iter().map(|(k, v)| format!("{k}: {}", brief(v))).collect::<Vec<_>>().join(" · "), max),
        Some(v) => clip(&brief(v), max),
        None => String::new(),
    }
}

fn queue_list(f: &Filters, items: &[ReviewItem]) -> String {
    if items.is_empty() {
        return "<p class=\"empty\">No runs to review under these filters.</p>".into();
    }
    let mut html = String::from("<ol class=\"queue\">");
    for item in items {
        let run = &item.run;
        let margin = item.label_margin.map_or(String::new(), |m| format!("<span class=\"margin\" title=\"label margin\">±{m:.2}</span>"));
        let outputs = match &run.error {
            Some(e) => format!("<span class=\"error\">failed: {}</span>", esc(&clip(e, 80))),
            None => esc(&summary(run.outputs.as_ref(), 80)),
        };
        let _ = write!(
            html,
            "<li><a href=\"{href}\"><span class=\"tier tier-{tier}\">{tier}</span><span class=\"out\">{outputs}</span>{margin}\
             <span class=\"in\">{inputs}</span><time>{created}</time></a></li>",
            href = esc(&f.url(&format!("/review/run/{}", run.id), None)),
            tier = item.tier,
            inputs = esc(&summary(Some(&run.inputs), 140)),
            created = esc(&when(run.created)),
        );
    }
    html.push_str("</ol>");
    html
}

/// `GET /review/next`: the run after `after` in the queue (or the first, once past the end),
/// or back to the queue when nothing is left.
pub(super) async fn next(State(app): State<Shared>, Query(q): Query<QueueQuery>) -> Response {
    let f = match Filters::read(q, app.service.program().dag()) {
        Ok(f) => f,
        Err(e) => return bad_filter(e),
    };
    let store = app.service.store();
    let mut found = store.review_queue(&f.filter, f.after.as_ref(), 1).await;
    if f.after.is_some() && found.as_ref().is_ok_and(Vec::is_empty) {
        // Past the end: skipped runs are still waiting at the front.
        found = store.review_queue(&f.filter, None, 1).await;
    }
    match found {
        Ok(items) => match items.first() {
            Some(item) => pages::redirect(&f.url(&format!("/review/run/{}", item.run.id), None)),
            None => pages::redirect(&format!("{}&done=1", f.url("/review", None))),
        },
        Err(e) => store_failed(e),
    }
}

/// `GET /review/run/{id}`: one run and the form to correct it.
pub(super) async fn show(State(app): State<Shared>, Extension(reviewer): Extension<Reviewer>, Path(id): Path<String>, Query(q): Query<QueueQuery>) -> Response {
    let program = app.service.program();
    let f = match Filters::read(q, program.dag()) {
        Ok(f) => f,
        Err(e) => return bad_filter(e),
    };
    run_page(&app, &reviewer, &f, &id, None).await
}

async fn run_page(app: &Shared, reviewer: &Reviewer, f: &Filters, id: &str, problem: Option<(&str, &Submission)>) -> Response {
    let Ok(id) = RunId::parse(id) else {
        return pages::error_page(StatusCode::NOT_FOUND, "No such run", "That is not a run id.");
    };
    let store = app.service.store();
    let (run, item) = match tokio::try_join!(store.run(&id), store.review_item(&f.filter, &id)) {
        Ok(v) => v,
        Err(e) => return store_failed(e),
    };
    let Some(run) = run else {
        return pages::error_page(StatusCode::NOT_FOUND, "No such run", &format!("Run `{id}` is not in the store (it may have expired or been forgotten)."));
    };
    let program = app.service.program();
    let dag = program.dag();
    let mut body = String::from("<main class=\"run\">");
    let _ = write!(body, "<p class=\"crumbs\"><a href=\"{}\">Queue</a> ", esc(&f.url("/review", None)));
    match &item {
        Some(i) => {
            let _ = write!(body, "<span class=\"tier tier-{0}\">{0}</span>", i.tier);
        }
        None => body.push_str("<span class=\"tier tier-done\">not in the queue</span>"),
    }
    let _ = write!(body, " <span>{}</span> <time>{}</time>", esc(&run.program), esc(&when(run.created)));
    if let Some(h) = &run.artifact_hash {
        let _ = write!(body, " <code title=\"{}\">{}</code>", esc(h), esc(&h[..h.len().min(12)]));
    }
    if let Some(m) = item.as_ref().and_then(|i| i.label_margin) {
        let _ = write!(body, " <span class=\"margin\" title=\"label margin\">±{m:.2}</span>");
    }
    body.push_str("</p>");
    body.push_str(&fields_section("Inputs", &run.inputs));
    match (&run.outputs, &run.error) {
        (Some(o), _) => body.push_str(&fields_section("Outputs", o)),
        (None, Some(e)) => {
            let _ = write!(body, "<section><h2>Outputs</h2><p class=\"error\">The run failed: {}</p></section>", esc(e));
        }
        (None, None) => {}
    }
    body.push_str(&trace_section(&run.trace));
    body.push_str(&given_feedback(&run));
    let after = item.as_ref().map(|i| &i.cursor);
    if let Some((message, _)) = problem {
        let _ = write!(body, "<p class=\"problem\" role=\"alert\">{}</p>", esc(message));
    }
    if run.program == dag.name() {
        body.push_str(&form::render(dag, &run, reviewer, &f.url(&format!("/review/run/{id}"), None), problem.map(|(_, s)| s)));
    } else {
        let _ = write!(
            body,
            "<p class=\"notice\">This server serves <code>{}</code>: review runs of <code>{}</code> on a server that serves it.</p>",
            esc(dag.name()),
            esc(&run.program)
        );
    }
    let _ = write!(body, "<p><a class=\"button\" id=\"skip\" href=\"{}\">Skip <kbd>S</kbd></a></p>", esc(&f.url("/review/next", after)));
    body.push_str("</main>");
    let mut response = Page::new(&format!("Run {}", clip(id.as_str(), 16))).signed_in(reviewer, Section::Queue).body(body).render();
    if problem.is_some() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

fn fields_section(title: &str, value: &Value) -> String {
    let mut html = format!("<section><h2>{}</h2><dl class=\"fields\">", esc(title));
    let one = Map::from_iter([(String::new(), value.clone())]);
    let fields = value.as_object().unwrap_or(&one);
    for (k, v) in fields {
        let text = match v {
            Value::String(s) => s.clone(),
            v => serde_json::to_string_pretty(v).unwrap_or_default(),
        };
        let _ = write!(html, "<dt>{}</dt><dd><pre>{}</pre></dd>", esc(k), esc(&text));
    }
    html.push_str("</dl></section>");
    html
}

/// Each step's prompt, answers, label scores, tokens and latency, folded away.
fn trace_section(trace: &Value) -> String {
    let steps = trace["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
    if steps.is_empty() {
        return String::new();
    }
    let mut html = format!("<details class=\"trace\"><summary>Trace: {} step(s), {} ms</summary>", steps.len(), trace["latency_ms"].as_u64().unwrap_or(0));
    for s in steps {
        let _ = write!(
            html,
            "<details class=\"step\"><summary><b>{}</b> {} · {} ms · {} prompt + {} completion tokens</summary>",
            esc(s["step"].as_str().unwrap_or("?")),
            esc(s["kind"].as_str().unwrap_or("")),
            s["latency_ms"].as_u64().unwrap_or(0),
            s["prompt_tokens"].as_u64().unwrap_or(0),
            s["completion_tokens"].as_u64().unwrap_or(0),
        );
        if let Some(by) = s["served_by"].as_str().filter(|b| !b.is_empty()) {
            let _ = write!(html, "<p class=\"hint\">served by {}</p>", esc(by));
        }
        if let Some(e) = s["error"].as_str() {
            let _ = write!(html, "<p class=\"error\">{}</p>", esc(e));
        }
        if let Some(p) = s["prompt"].as_str().filter(|p| !p.is_empty()) {
            let _ = write!(html, "<h3>Prompt</h3><pre>{}</pre>", esc(p));
        }
        for raw in s["raw"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let _ = write!(html, "<h3>Answer</h3><pre>{}</pre>", esc(&brief(raw)));
        }
        if let Some(scores) = s["choice_scores"].as_array() {
            html.push_str("<h3>Label scores</h3><table class=\"scores\"><tr><th>label</th><th>log-probability</th></tr>");
            for sc in scores {
                // A label dropped once it could not win has only an upper bound.
                let bound = if sc["pruned"].as_bool().unwrap_or(false) { "≤ " } else { "" };
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{bound}{:.3}</td></tr>",
                    esc(sc["label"].as_str().unwrap_or("")),
                    sc["logprob"].as_f64().unwrap_or(f64::NAN)
                );
            }
            html.push_str("</table>");
        }
        html.push_str("</details>");
    }
    html.push_str("</details>");
    html
}

fn given_feedback(run: &StoredRun) -> String {
    if run.feedback.is_empty() {
        return String::new();
    }
    let mut html = String::from("<section><h2>Feedback so far</h2><ul class=\"given\">");
    for fb in &run.feedback {
        let what = match &fb.payload {
            crate::store::FeedbackPayload::Score(s) => format!("{s}"),
            crate::store::FeedbackPayload::Value(v) => v.clone(),
            crate::store::FeedbackPayload::Correction(c) => summary(Some(c), 120),
        };
        let _ = write!(
            html,
            "<li><b>{}</b> {} <span class=\"hint\">{} · {} · {}</span>{}</li>",
            esc(&fb.key),
            esc(&what),
            fb.source,
            esc(fb.user_id.as_deref().unwrap_or("anonymous")),
            esc(&when(fb.created)),
            fb.comment.as_ref().map_or(String::new(), |c| format!("<br><q>{}</q>", esc(c))),
        );
    }
    html.push_str("</ul></section>");
    html
}

/// `POST /review/run/{id}`: stores the reviewer's feedback and moves on to the next run.
pub(super) async fn submit(
    State(app): State<Shared>,
    Extension(reviewer): Extension<Reviewer>,
    Path(id): Path<String>,
    Query(q): Query<QueueQuery>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let submission = Submission::new(fields);
    if !reviewer.csrf_ok(submission.get("csrf")) {
        return super::auth::csrf_refused();
    }
    let program = app.service.program();
    let f = match Filters::read(q, program.dag()) {
        Ok(f) => f,
        Err(e) => return bad_filter(e),
    };
    let Ok(run_id) = RunId::parse(&id) else {
        return pages::error_page(StatusCode::NOT_FOUND, "No such run", "That is not a run id.");
    };
    // Where the run sat in the queue, read before the feedback takes it out.
    let cursor = match app.service.store().review_item(&f.filter, &run_id).await {
        Ok(item) => item.map(|i| i.cursor),
        Err(e) => return store_failed(e),
    };
    let inputs = match submission.feedback(program.dag(), &run_id, &reviewer.name) {
        Ok(inputs) => inputs,
        Err(problem) => return run_page(&app, &reviewer, &f, &id, Some((&problem, &submission))).await,
    };
    for input in inputs {
        if let Err(e) = app.service.feedback(input).await {
            let problem = e.to_string();
            return run_page(&app, &reviewer, &f, &id, Some((&problem, &submission))).await;
        }
    }
    pages::redirect(&f.url("/review/next", cursor.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ReviewTier;

    #[test]
    fn count_texts_mark_capped_counts() {
        assert_eq!(count_text(3), "3");
        assert_eq!(count_text(COUNT_CAP), format!("{COUNT_CAP}+"));
        // Fields show in the order the outputs have (JSON objects keep their order).
        assert_eq!(summary(Some(&serde_json::json!({"team": "billing", "n": 2})), 80), "team: billing · n: 2");
    }

    #[test]
    fn tiers_show_by_name() {
        assert_eq!(ReviewTier::Flagged.to_string(), "flagged");
    }
}
