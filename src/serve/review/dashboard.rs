//! The dashboard: for the served program, each artifact version's holdout score and promotion
//! decision (what learning recorded, as `loopc history` shows it), feedback volume per day by
//! source, agreement over time (the share of thumbs, ratings and implicit signals that approve
//! of the answer, read by the loop's one rule, `learn::opinion`, and how often reviewers left the
//! answer as it was), the label confusion that corrections reveal, and each user's trust (from
//! online memory when the program has one, else from the corrections read here). Every figure comes from a bounded
//! store query: the last [`DAYS`] days, at most [`MAX_CORRECTIONS`] corrections.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde_json::Value;

use super::auth::Reviewer;
use super::charts::{self, VersionPoint};
use super::pages::{self, esc, when, Page, Section};
use crate::graph::{Dag, Type};
use crate::learn::opinion::{Said, Voice};
use crate::learn::trust::{self, Judgement, Rater, DEFAULT_MIN_TRUST};
use crate::learn::{opinion, RaterTrust, TrustTable, Verdict};
use crate::serve::app::Shared;
use crate::store::{CorrectionRow, FeedbackDay, FeedbackPayload, FeedbackSource, ReviewFilter, Timestamp};

/// How many days the charts cover.
pub const DAYS: i64 = 30;

/// The most corrections the agreement and confusion figures read.
pub const MAX_CORRECTIONS: usize = 5_000;

const DAY_MS: i64 = 86_400_000;

/// `GET /review/dashboard`.
pub(super) async fn show(State(app): State<Shared>, Extension(reviewer): Extension<Reviewer>) -> Response {
    let program = app.service.program();
    let dag = program.dag();
    let name = dag.name().to_string();
    let store = app.service.store();
    let today = Timestamp::now().millis().div_euclid(DAY_MS);
    let since = Timestamp::from_millis((today - DAYS + 1) * DAY_MS);
    let until = Timestamp::from_millis((today + 1) * DAY_MS);
    let filter = ReviewFilter { program: Some(name.clone()), ..ReviewFilter::default() };
    let read = tokio::try_join!(
        async { crate::learn::history(store, &name).await.map_err(|e| e.to_string()) },
        async { store.feedback_days(Some(&name), since, until).await.map_err(|e| e.to_string()) },
        async { store.corrections(Some(&name), since, until, MAX_CORRECTIONS).await.map_err(|e| e.to_string()) },
        async { store.review_counts(&filter).await.map_err(|e| e.to_string()) },
    );
    let (history, days, corrections, counts) = match read {
        Ok(v) => v,
        Err(e) => return pages::error_page(StatusCode::SERVICE_UNAVAILABLE, "The store did not answer", &e),
    };
    let day_labels: Vec<String> = (0..DAYS).map(|i| day_label(today - DAYS + 1 + i)).collect();
    let mut body = format!("<main class=\"dashboard\"><h1>Dashboard: <code>{}</code></h1>", esc(&name));
    let _ = write!(
        body,
        "<p class=\"hint\">Waiting for review: {} flagged, {} unsure, {} others; {} reviewed. Charts cover the last {DAYS} days (UTC).</p>",
        counts.flagged, counts.unsure, counts.sample, counts.reviewed
    );
    body.push_str(&versions_section(&history));
    body.push_str(&volume_section(&days, today, &day_labels));
    body.push_str(&agreement_section(dag, &days, &corrections, today, &day_labels));
    body.push_str(&confusion_section(dag, &corrections));
    let trust = match app.service.memory() {
        Some(m) => (m.trust(), "online memory's estimate from every correction and approval it holds"),
        None => (trust_of_corrections(dag, &corrections), "estimated from the corrections above"),
    };
    body.push_str(&trust_section(&trust.0, trust.1));
    body.push_str("</main>");
    Page::new("Dashboard").signed_in(&reviewer, Section::Dashboard).body(body).render()
}

fn day_label(day: i64) -> String {
    let t = Timestamp::from_millis(day * DAY_MS).to_string();
    t.get(5..10).unwrap_or(&t).to_string()
}

fn versions_section(history: &[crate::learn::Version]) -> String {
    let mut html = String::from("<section><h2>Versions</h2>");
    if history.is_empty() {
        html.push_str("<p class=\"empty\">No artifact versions recorded yet: serve an artifact, or learn with <code>loopc learn</code> or <code>serve --learn-every</code>.</p></section>");
        return html;
    }
    let finite = |v: f64| v.is_finite().then_some(v);
    let points: Vec<VersionPoint> = history
        .iter()
        .map(|v| VersionPoint {
            label: v.hash.chars().take(7).collect(),
            current: v.record.holdout_current.and_then(finite),
            candidate: v.record.holdout_candidate.and_then(finite),
            promoted: v.record.decision == Verdict::Promoted,
        })
        .collect();
    html.push_str(&charts::versions("holdout score per version", &points));
    html.push_str(
        "<p class=\"hint\">Dots: a candidate's holdout score, filled when promoted, hollow when rejected (for a candidate whose scoring stopped once it could not reach the version it was compared with, the most it could have scored); bars: the version it was compared with.</p>",
    );
    html.push_str("<div class=\"scroll\"><table><tr><th>version</th><th>recorded</th><th>decision</th><th>holdout (was → candidate)</th><th>feedback</th><th>reason</th></tr>");
    for v in history.iter().rev() {
        let score = |s: Option<f64>| s.filter(|s| s.is_finite()).map_or_else(|| "–".into(), |s| format!("{s:.3}"));
        let r = &v.record;
        let _ = write!(
            html,
            "<tr><td><code title=\"{}\">{}</code>{}</td><td>{}</td><td class=\"decision-{}\">{}</td><td>{} → {}{}</td><td>{}</td><td>{}</td></tr>",
            esc(&v.hash),
            esc(&v.hash.chars().take(12).collect::<String>()),
            if v.tainted { " <span class=\"tier tier-flagged\" title=\"a forgotten user's data trained it\">tainted</span>" } else { "" },
            esc(&when(Timestamp::from_millis(v.created_ms))),
            r.decision,
            r.decision,
            score(r.holdout_current),
            crate::learn::gate::at_most(r.holdout_stopped_after),
            score(r.holdout_candidate),
            r.feedback_count,
            esc(&r.reason),
        );
    }
    html.push_str("</table></div></section>");
    html
}

/// Users' trust from `corrections` alone (each person's corrected outputs per input).
fn trust_of_corrections(dag: &Dag, corrections: &[CorrectionRow]) -> TrustTable {
    let mut rows: Vec<&CorrectionRow> = corrections.iter().collect();
    rows.sort_by_key(|c| c.created.millis());
    let judgements: Vec<Judgement> = rows
        .into_iter()
        .filter_map(|c| {
            let o = opinion(&c.key, &FeedbackPayload::Correction(c.correction.clone()), c.source, c.outputs.as_ref(), dag)?;
            let (Voice::Person, Said::Labelled { outputs, .. }) = (o.voice, o.said) else { return None };
            Some(Judgement {
                item: c.inputs.to_string(),
                rater: c.user_id.clone().unwrap_or_else(|| format!("anonymous:{}", c.run_id)),
                kind: if c.source == FeedbackSource::Annotation { Rater::Reviewer } else { Rater::User },
                answer: Value::Object(outputs).to_string(),
            })
        })
        .collect();
    TrustTable::estimate(&judgements, trust::classes_of(dag))
}

/// The most users the trust table lists (the least trusted first).
const MAX_TRUST_ROWS: usize = 50;

fn trust_section(table: &TrustTable, from: &str) -> String {
    let mut raters: Vec<(&str, &RaterTrust)> = table.raters().collect();
    let mut html = format!(
        "<section><h2>Trust per user</h2><p class=\"hint\">How often each person's labels agree with reviewers, the holdout and other users on the same inputs ({}); feedback of users below {:.2} is left out of memory, learning and the human metric.</p>",
        esc(from),
        DEFAULT_MIN_TRUST
    );
    if raters.is_empty() {
        html.push_str("<p class=\"empty\">No corrections yet.</p></section>");
        return html;
    }
    raters.sort_by(|a, b| a.1.trust.total_cmp(&b.1.trust).then(a.0.cmp(b.0)));
    let _ = write!(html, "<div class=\"scroll\"><table><tr><th>user</th><th>trust</th><th>answers</th><th>compared</th><th>evidence</th></tr>");
    for (user, t) in raters.iter().take(MAX_TRUST_ROWS) {
        let low = if t.trust < DEFAULT_MIN_TRUST { " <span class=\"tier tier-flagged\">left out</span>" } else { "" };
        let _ = write!(
            html,
            "<tr><td><code>{}</code>{}{low}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(user),
            if t.reviewer { " (reviewer)" } else { "" },
            t.trust,
            t.answers,
            t.compared,
            esc(&t.evidence())
        );
    }
    html.push_str("</table></div>");
    if raters.len() > MAX_TRUST_ROWS {
        let _ = write!(html, "<p class=\"hint\">{} more users, all trusted more.</p>", raters.len() - MAX_TRUST_ROWS);
    }
    html.push_str("</section>");
    html
}

fn slot(day: i64, today: i64) -> Option<usize> {
    usize::try_from(day - (today - DAYS + 1)).ok().filter(|i| *i < DAYS as usize)
}

fn volume_section(days: &[FeedbackDay], today: i64, labels: &[String]) -> String {
    let sources: Vec<FeedbackSource> = FeedbackSource::ALL.to_vec();
    let mut values = vec![vec![0u64; sources.len()]; labels.len()];
    let mut total = 0;
    for d in days {
        if let (Some(i), Some(s)) = (slot(d.day, today), sources.iter().position(|s| *s == d.source)) {
            values[i][s] += d.count;
            total += d.count;
        }
    }
    let names: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    format!(
        "<section><h2>Feedback per day</h2><p class=\"hint\">{total} pieces in {DAYS} days, by source.</p>{}{}</section>",
        charts::stacked_bars("feedback per day by source", labels, &values),
        charts::legend(&names)
    )
}

/// What a piece of feedback says of its run's answer, by the loop's one rule
/// ([`opinion`]): `Some(true)` approves, `Some(false)` rejects, `None` says neither.
fn approves(dag: &Dag, key: &str, payload: &FeedbackPayload, source: FeedbackSource, answer: Option<&Value>) -> Option<bool> {
    opinion(key, payload, source, answer, dag).and_then(|o| o.approves())
}

/// Whether a reviewer's correction kept the program's answer (every corrected field as
/// answered); `None` when the run did not answer.
fn kept(dag: &Dag, c: &CorrectionRow) -> Option<bool> {
    c.outputs.as_ref()?;
    approves(dag, &c.key, &FeedbackPayload::Correction(c.correction.clone()), c.source, c.outputs.as_ref())
}

fn agreement_section(dag: &Dag, days: &[FeedbackDay], corrections: &[CorrectionRow], today: i64, labels: &[String]) -> String {
    // Scores approve or reject as `opinion` reads them: thumbs, ratings on their declared
    // scale, implicit signals; a model's scores are no one's approval.
    let mut up = vec![(0u64, 0u64); labels.len()];
    for d in days {
        let Some(score) = d.score else { continue };
        if let (Some(i), Some(a)) = (slot(d.day, today), approves(dag, &d.key, &FeedbackPayload::Score(score), d.source, None)) {
            up[i].0 += if a { d.count } else { 0 };
            up[i].1 += d.count;
        }
    }
    let mut kept_answers = vec![(0u64, 0u64); labels.len()];
    for c in corrections.iter().filter(|c| c.source == FeedbackSource::Annotation) {
        if let (Some(i), Some(a)) = (slot(c.created.millis().div_euclid(DAY_MS), today), kept(dag, c)) {
            kept_answers[i].0 += u64::from(a);
            kept_answers[i].1 += 1;
        }
    }
    let share = |v: &[(u64, u64)]| -> Vec<Option<f64>> { v.iter().map(|(a, n)| (*n > 0).then(|| *a as f64 / *n as f64)).collect() };
    let total = |v: &[(u64, u64)]| v.iter().fold((0, 0), |acc, (a, n)| (acc.0 + a, acc.1 + n));
    let (ups, votes) = total(&up);
    let (same, reviewed) = total(&kept_answers);
    let pct = |a: u64, n: u64| if n == 0 { "–".to_string() } else { format!("{:.0}%", 100.0 * a as f64 / n as f64) };
    format!(
        "<section><h2>Agreement over time</h2><p class=\"hint\">Approved: {} of {votes} thumbs, ratings and signals ({}). Reviewers kept the answer: {} of {reviewed} reviews ({}).</p>{}{}</section>",
        ups,
        pct(ups, votes),
        same,
        pct(same, reviewed),
        charts::share_lines("agreement per day", labels, &[share(&up), share(&kept_answers)]),
        charts::legend(&["approved".to_string(), "reviewer kept the answer".to_string()])
    )
}

fn confusion_section(dag: &Dag, corrections: &[CorrectionRow]) -> String {
    let Some(field) = dag.outputs().iter().find(|f| matches!(f.ty, Type::Label(_))) else {
        return String::new();
    };
    let Type::Label(labels) = &field.ty else { return String::new() };
    let mut counts = vec![vec![0u64; labels.len()]; labels.len()];
    let mut by_pair: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let label_of = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|s| labels.iter().position(|l| l == s));
    for c in corrections {
        let answered = label_of(c.outputs.as_ref().and_then(|o| o.get(&field.name)));
        let corrected = label_of(c.correction.get(&field.name));
        if let (Some(a), Some(b)) = (answered, corrected) {
            counts[a][b] += 1;
            *by_pair.entry((a, b)).or_default() += 1;
        }
    }
    let n: u64 = by_pair.values().sum();
    let mut html = format!(
        "<section><h2>Label confusion: <code>{}</code></h2><p class=\"hint\">{n} corrections (the newest {MAX_CORRECTIONS} at most); rows: what the program answered, columns: the correction.</p>",
        esc(&field.name)
    );
    if n == 0 {
        html.push_str("<p class=\"empty\">No corrections of this label yet.</p></section>");
        return html;
    }
    html.push_str(&charts::confusion("label confusion", labels, &counts));
    let worst = by_pair.iter().filter(|((a, b), _)| a != b).max_by_key(|(_, c)| **c);
    if let Some(((a, b), c)) = worst {
        let times = if *c == 1 { "once".to_string() } else { format!("{c} times") };
        let _ = write!(html, "<p>Most often corrected: <b>{}</b> → <b>{}</b> ({times}).</p>", esc(&labels[*a]), esc(&labels[*b]));
    }
    html.push_str("</section>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunId;
    use serde_json::json;

    fn correction(outputs: Value, correction: Value) -> CorrectionRow {
        CorrectionRow {
            run_id: RunId::generate(),
            created: Timestamp::from_millis(5 * DAY_MS),
            key: "correction".into(),
            source: FeedbackSource::Annotation,
            correction,
            outputs: Some(outputs),
            inputs: json!({"text": "x"}),
            user_id: Some("ann".into()),
        }
    }

    fn dag() -> Dag {
        let src = "program p\ninput text: text\noutput team: label(a, b)\noutput n: int\n\
                   signature S { in t: text out team: label(a, b) out n: int }\nstep s = predict S { t: input.text }\n\
                   return { team: s.team, n: s.n }\nfeedback thumbs: bool\nfeedback stars: int(1..5)\nfeedback correction\n";
        crate::graph::check_text(src).dag.unwrap()
    }

    #[test]
    fn a_correction_is_kept_when_it_leaves_every_field_as_answered() {
        let d = dag();
        assert_eq!(kept(&d, &correction(json!({"team": "a", "n": 1}), json!({"team": "a"}))), Some(true));
        assert_eq!(kept(&d, &correction(json!({"team": "a"}), json!({"team": "b"}))), Some(false));
        let mut none = correction(json!({}), json!({"team": "b"}));
        none.outputs = None;
        assert_eq!(kept(&d, &none), None);
    }

    #[test]
    fn the_approval_share_reads_scores_by_the_loops_one_rule() {
        let d = dag();
        let day = |key: &str, source, score: f64, count| FeedbackDay { day: 100, key: key.into(), source, score: Some(score), count };
        let days = [
            day("thumbs", FeedbackSource::User, 1.0, 3),
            day("thumbs", FeedbackSource::User, 0.0, 1),
            // Four stars of five approve, one star rejects, on the declared scale.
            day("stars", FeedbackSource::User, 4.0, 2),
            day("stars", FeedbackSource::User, 1.0, 2),
            day("accepted", FeedbackSource::Implicit, 1.0, 1),
            // A judge's thumbs are no one's approval.
            day("thumbs", FeedbackSource::Model, 1.0, 50),
        ];
        let labels: Vec<String> = (0..DAYS).map(|i| i.to_string()).collect();
        let html = agreement_section(&d, &days, &[], 100, &labels);
        assert!(html.contains("Approved: 6 of 9 thumbs, ratings and signals (67%)"), "{html}");
    }

    #[test]
    fn days_fall_into_the_window_or_nowhere() {
        let today = 100;
        assert_eq!(slot(today, today), Some(DAYS as usize - 1));
        assert_eq!(slot(today - DAYS + 1, today), Some(0));
        assert_eq!(slot(today - DAYS, today), None);
        assert_eq!(slot(today + 1, today), None);
        assert_eq!(day_label(0), "01-01");
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;
    use crate::store::RunId;
    use serde_json::json;

    #[test]
    fn the_trust_table_lists_the_least_trusted_first_and_marks_who_is_left_out() {
        let dag = crate::graph::check_text(
            "program p\ninput text: text\noutput team: label(a, b, c)\nsignature S { in t: text out team: label(a, b, c) }\n\
             step s = predict S { t: input.text }\nreturn { team: s.team }\n",
        )
        .dag
        .unwrap();
        let mut rows = Vec::new();
        for i in 0..5 {
            for (user, team, source) in [("ann", "a", FeedbackSource::Annotation), ("honest", "a", FeedbackSource::User), ("<liar>", "b", FeedbackSource::User)]
            {
                rows.push(CorrectionRow {
                    run_id: RunId::generate(),
                    created: Timestamp::from_millis(i),
                    key: "correction".into(),
                    source,
                    correction: json!({"team": team}),
                    outputs: Some(json!({"team": "c"})),
                    inputs: json!({"text": format!("ticket {i}")}),
                    user_id: Some(user.into()),
                });
            }
        }
        let table = trust_of_corrections(&dag, &rows);
        let html = trust_section(&table, "test");
        let liar = html.find("&lt;liar&gt;").expect("names are escaped");
        assert!(liar < html.find("honest").unwrap(), "the least trusted first: {html}");
        assert!(html.contains("left out") && html.contains("agreed with reviewers on 0 of 5"), "{html}");
        assert_eq!(html.matches("left out</span>").count(), 1, "only the liar: {html}");
    }
}
