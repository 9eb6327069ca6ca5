//! The correction form of a run page: typed widgets from the program's output signature (a
//! button per label, keys 1–9; a toggle for a bool; a text area for text; a number field; a JSON
//! editor for json and lists), one widget per other declared feedback (a rating row for a
//! bounded int, thumbs for a bool, ...), and a comment. [`Submission`] turns a posted form back
//! into [`FeedbackInput`]s with source `annotation`, which `Service::feedback` checks like any
//! other feedback.

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use super::auth::Reviewer;
use super::pages::{brief, esc};
use crate::graph::{Dag, FeedbackKind, Field, Type};
use crate::serve::FeedbackInput;
use crate::store::{FeedbackSource, RunId, StoredRun};

/// A posted form, its fields in order (a checkbox after its hidden default: the last wins).
pub(super) struct Submission {
    fields: Vec<(String, String)>,
}

impl Submission {
    /// The posted fields.
    pub fn new(fields: Vec<(String, String)>) -> Submission {
        Submission { fields }
    }

    /// The last value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn filled(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }

    /// The feedback this form gives on `run`, by `reviewer`: a correction (when the program
    /// takes one), each other declared feedback that was filled in, the comment on the first.
    /// Each carries a client id made of the form's nonce and its key, so a form posted twice
    /// (a reload, a double click) is stored once.
    pub fn feedback(&self, dag: &Dag, run: &RunId, reviewer: &str) -> Result<Vec<FeedbackInput>, String> {
        let nonce = self.get("nonce").filter(|n| (8..=40).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric()));
        let nonce = nonce.ok_or("the form is incomplete (no nonce): reload the page")?;
        let base = |key: &str| FeedbackInput {
            client_id: Some(format!("rv-{nonce}-{key}")),
            run_id: Some(run.clone()),
            key: key.to_string(),
            source: Some(FeedbackSource::Annotation),
            user_id: Some(reviewer.to_string()),
            ..FeedbackInput::default()
        };
        let mut out = Vec::new();
        if let Some(spec) = dag.feedback().iter().find(|f| f.kind == FeedbackKind::Correction) {
            if self.get("corrects").is_some() {
                let mut object = Map::new();
                for field in dag.outputs() {
                    object.insert(field.name.clone(), self.output_value(field)?);
                }
                out.push(FeedbackInput { correction: Some(Value::Object(object)), ..base(&spec.name) });
            }
        }
        for spec in dag.feedback().iter().filter(|f| f.kind != FeedbackKind::Correction) {
            let Some(raw) = self.filled(&format!("fb.{}", spec.name)) else { continue };
            let raw = raw.trim();
            let number = || raw.parse::<f64>().ok().filter(|n| n.is_finite()).ok_or(format!("`{}` takes a number, not `{raw}`", spec.name));
            let mut input = base(&spec.name);
            match &spec.kind {
                FeedbackKind::Bool | FeedbackKind::Int { .. } | FeedbackKind::Float { .. } => input.score = Some(number()?),
                FeedbackKind::Label(_) | FeedbackKind::Text => input.value = Some(raw.to_string()),
                FeedbackKind::Correction => continue,
            }
            out.push(input);
        }
        if let Some(comment) = self.filled("comment") {
            match out.first_mut() {
                Some(first) => first.comment = Some(comment.trim().to_string()),
                None => return Err("a comment goes with a correction or a rating: give one of them too".into()),
            }
        }
        if out.is_empty() {
            return Err("nothing to save: correct the outputs or rate the answer, or skip this run".into());
        }
        Ok(out)
    }

    /// The corrected value of output `field`, read from its widget.
    fn output_value(&self, field: &Field) -> Result<Value, String> {
        let name = format!("out.{}", field.name);
        let raw = self.get(&name).unwrap_or("");
        let parsed = match &field.ty {
            Type::Label(_) if raw.is_empty() => return Err(format!("choose a label for `{}`", field.name)),
            Type::Label(_) | Type::Text | Type::Constrained(_) => Value::String(raw.to_string()),
            Type::Bool => Value::Bool(raw == "true"),
            Type::Int => raw.trim().parse::<i64>().map(Value::from).map_err(|_| format!("`{}` takes a whole number, not `{raw}`", field.name))?,
            Type::Float => {
                raw.trim().parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number).ok_or(format!("`{}` takes a number, not `{raw}`", field.name))?
            }
            Type::Json | Type::List(_) => serde_json::from_str(raw).map_err(|e| format!("`{}` is not valid JSON: {e}", field.name))?,
        };
        Ok(parsed)
    }
}

/// A fresh form nonce.
fn nonce() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// The form for `run` of `dag`, posting to `action`; `again` refills it after a refusal.
pub(super) fn render(dag: &Dag, run: &StoredRun, reviewer: &Reviewer, action: &str, again: Option<&Submission>) -> String {
    let mut html = format!("<form method=\"post\" action=\"{}\" id=\"review-form\" class=\"review\">", esc(action));
    if let Some(csrf) = &reviewer.csrf {
        let _ = write!(html, "<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf));
    }
    let nonce = again.and_then(|s| s.get("nonce")).map_or_else(nonce, str::to_string);
    let _ = write!(html, "<input type=\"hidden\" name=\"nonce\" value=\"{}\"><h2>Your review</h2>", esc(&nonce));
    let mut hotkeys = true;
    if dag.feedback().iter().any(|f| f.kind == FeedbackKind::Correction) {
        html.push_str("<input type=\"hidden\" name=\"corrects\" value=\"1\">");
        for field in dag.outputs() {
            let name = format!("out.{}", field.name);
            let current = match again {
                Some(s) => s.get(&name).map(|v| Value::String(v.to_string())),
                None => run.outputs.as_ref().and_then(|o| o.get(&field.name)).cloned(),
            };
            html.push_str(&output_widget(field, current.as_ref(), &mut hotkeys));
        }
    }
    for spec in dag.feedback().iter().filter(|f| f.kind != FeedbackKind::Correction) {
        let name = format!("fb.{}", spec.name);
        let current = again.and_then(|s| s.get(&name)).unwrap_or("");
        let title = spec.description.as_deref().unwrap_or(&spec.name);
        html.push_str(&feedback_widget(&spec.name, title, &spec.kind, current));
    }
    let comment = again.and_then(|s| s.get("comment")).unwrap_or("");
    let _ = write!(
        html,
        "<label class=\"block\" for=\"comment\">Comment</label><textarea id=\"comment\" name=\"comment\" rows=\"2\">{}</textarea>\
         <div class=\"actions\"><button type=\"submit\" class=\"primary\" id=\"save\">Save and next <kbd>Enter</kbd></button></div></form>",
        esc(comment)
    );
    html
}

/// A stable id for a field's widget (names may hold characters ids should not).
fn widget_id(prefix: &str, name: &str, i: usize) -> String {
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{prefix}-{safe}-{i}")
}

/// A row of choices as radio buttons styled as buttons; the first row on the page answers to
/// the keys 1–9.
fn choices(name: &str, legend: &str, options: &[(String, String)], current: &str, hotkeys: &mut bool) -> String {
    let keyed = std::mem::replace(hotkeys, false);
    let mut html = format!("<fieldset class=\"choices\"{}><legend>{}</legend>", if keyed { " data-hotkeys" } else { "" }, esc(legend));
    for (i, (value, label)) in options.iter().enumerate() {
        let id = widget_id("c", name, i);
        let checked = if value == current { " checked" } else { "" };
        let key = if keyed && i < 9 { format!("<kbd>{}</kbd>", i + 1) } else { String::new() };
        let _ = write!(
            html,
            "<input type=\"radio\" name=\"{n}\" id=\"{id}\" value=\"{v}\"{checked}><label for=\"{id}\">{key}{l}</label>",
            n = esc(name),
            v = esc(value),
            l = esc(label)
        );
    }
    html.push_str("</fieldset>");
    html
}

fn output_widget(field: &Field, current: Option<&Value>, hotkeys: &mut bool) -> String {
    let name = format!("out.{}", field.name);
    let id = widget_id("o", &field.name, 0);
    let text = current.map(brief).unwrap_or_default();
    let legend = field.description.as_deref().map_or(field.name.clone(), |d| format!("{} — {d}", field.name));
    match &field.ty {
        Type::Label(labels) => {
            let options: Vec<(String, String)> = labels.iter().map(|l| (l.clone(), l.clone())).collect();
            choices(&name, &legend, &options, &text, hotkeys)
        }
        Type::Bool => format!(
            "<div class=\"toggle\"><input type=\"hidden\" name=\"{n}\" value=\"false\"><input type=\"checkbox\" role=\"switch\" id=\"{id}\" name=\"{n}\" value=\"true\"{c}>\
             <label for=\"{id}\">{l}</label></div>",
            n = esc(&name),
            c = if text == "true" { " checked" } else { "" },
            l = esc(&legend)
        ),
        Type::Text | Type::Constrained(_) => format!("<label class=\"block\" for=\"{id}\">{}</label><textarea id=\"{id}\" name=\"{}\" rows=\"4\">{}</textarea>", esc(&legend), esc(&name), esc(&text)),
        Type::Int | Type::Float => format!(
            "<label class=\"block\" for=\"{id}\">{}</label><input id=\"{id}\" name=\"{}\" type=\"number\" step=\"{}\" value=\"{}\">",
            esc(&legend),
            esc(&name),
            if field.ty == Type::Int { "1" } else { "any" },
            esc(&text)
        ),
        Type::Json | Type::List(_) => {
            let pretty = match current {
                Some(Value::String(s)) if matches!(field.ty, Type::Json | Type::List(_)) && serde_json::from_str::<Value>(s).is_ok() => s.clone(),
                Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
                None => String::new(),
            };
            format!(
                "<label class=\"block\" for=\"{id}\">{} <span class=\"hint\">JSON</span></label><textarea id=\"{id}\" name=\"{}\" rows=\"6\" class=\"json\" spellcheck=\"false\" data-json>{}</textarea>\
                 <p class=\"json-status hint\" aria-live=\"polite\"></p>",
                esc(&legend),
                esc(&name),
                esc(&pretty)
            )
        }
    }
}

/// A declared feedback's widget. Only the output labels answer to the number keys: a rating
/// row under them would make `1` ambiguous.
fn feedback_widget(key: &str, title: &str, kind: &FeedbackKind, current: &str) -> String {
    let name = format!("fb.{key}");
    let id = widget_id("f", key, 0);
    match kind {
        FeedbackKind::Bool => {
            // Words, not emoji: a reviewer's machine may have no emoji font.
            let options = [(String::new(), "—".to_string()), ("1".into(), "yes".into()), ("0".into(), "no".into())];
            let mut no_keys = false;
            choices(&name, title, &options, current, &mut no_keys)
        }
        FeedbackKind::Int { min: Some(lo), max: Some(hi) } if hi - lo < 10 && hi >= lo => {
            let mut options = vec![(String::new(), "—".to_string())];
            options.extend((*lo..=*hi).map(|n| (n.to_string(), n.to_string())));
            let mut no_keys = false;
            let row = choices(&name, title, &options, current, &mut no_keys);
            row.replacen("class=\"choices\"", "class=\"choices rating\"", 1)
        }
        FeedbackKind::Int { .. } | FeedbackKind::Float { .. } => format!(
            "<label class=\"block\" for=\"{id}\">{}</label><input id=\"{id}\" name=\"{}\" type=\"number\" step=\"any\" value=\"{}\">",
            esc(title),
            esc(&name),
            esc(current)
        ),
        FeedbackKind::Label(labels) => {
            let mut html =
                format!("<label class=\"block\" for=\"{id}\">{}</label><select id=\"{id}\" name=\"{}\"><option value=\"\">—</option>", esc(title), esc(&name));
            for l in labels {
                let selected = if l == current { " selected" } else { "" };
                let _ = write!(html, "<option{selected}>{}</option>", esc(l));
            }
            html.push_str("</select>");
            html
        }
        FeedbackKind::Text => format!(
            "<label class=\"block\" for=\"{id}\">{}</label><textarea id=\"{id}\" name=\"{}\" rows=\"2\">{}</textarea>",
            esc(title),
            esc(&name),
            esc(current)
        ),
        FeedbackKind::Correction => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag() -> Dag {
        let src = r#"program triage "Route a ticket"
input ticket: text
output team: label(billing, tech, other)
output urgent: bool
output note: text
signature Route "Route." { in ticket: text out team: label(billing, tech, other) out urgent: bool out note: text }
step route = predict Route { ticket: input.ticket }
return { team: route.team, urgent: route.urgent, note: route.note }
feedback thumbs: bool "was it right"
feedback rating: int(1..5)
feedback correction "the right answer"
"#;
        let checked = crate::graph::check_text(src);
        checked.dag.unwrap_or_else(|| panic!("the test program checks: {:?}", checked.diagnostics))
    }

    fn post(fields: &[(&str, &str)]) -> Submission {
        Submission::new(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn a_posted_form_becomes_annotation_feedback_with_the_comment_on_the_correction() {
        let run = RunId::generate();
        let s = post(&[
            ("nonce", "abcdef0123456789"),
            ("corrects", "1"),
            ("out.team", "tech"),
            ("out.urgent", "false"),
            ("out.urgent", "true"),
            ("out.note", "call back"),
            ("fb.rating", "4"),
            ("fb.thumbs", ""),
            ("comment", " it was a login problem "),
        ]);
        let got = s.feedback(&dag(), &run, "ana").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].key, "correction");
        assert_eq!(got[0].correction, Some(serde_json::json!({"team": "tech", "urgent": true, "note": "call back"})));
        assert_eq!(got[0].comment.as_deref(), Some("it was a login problem"));
        assert_eq!(got[0].source, Some(FeedbackSource::Annotation));
        assert_eq!(got[0].user_id.as_deref(), Some("ana"));
        assert_eq!(got[0].client_id.as_deref(), Some("rv-abcdef0123456789-correction"));
        assert_eq!((got[1].key.as_str(), got[1].score), ("rating", Some(4.0)));
    }

    #[test]
    fn incomplete_or_empty_forms_are_refused_with_a_reason() {
        let run = RunId::generate();
        let no_nonce = post(&[("corrects", "1"), ("out.team", "tech")]);
        assert!(no_nonce.feedback(&dag(), &run, "ana").unwrap_err().contains("nonce"));
        let no_label = post(&[("nonce", "abcdef0123456789"), ("corrects", "1"), ("out.team", "")]);
        assert!(no_label.feedback(&dag(), &run, "ana").unwrap_err().contains("choose a label for `team`"));
        let nothing = post(&[("nonce", "abcdef0123456789"), ("comment", "hm")]);
        assert!(nothing.feedback(&dag(), &run, "ana").unwrap_err().contains("comment goes with"));
        let bad_rating = post(&[("nonce", "abcdef0123456789"), ("fb.rating", "lots")]);
        assert!(bad_rating.feedback(&dag(), &run, "ana").unwrap_err().contains("takes a number"));
    }

    #[test]
    fn the_form_has_a_key_per_label_a_toggle_and_a_rating_row() {
        let dag = dag();
        let mut run = crate::store::StoredRun {
            id: RunId::generate(),
            program: "triage".into(),
            artifact_hash: None,
            created: crate::store::Timestamp::from_millis(0),
            user_id: None,
            inputs: serde_json::json!({"ticket": "hi"}),
            outputs: Some(serde_json::json!({"team": "billing", "urgent": true, "note": "<b>"})),
            trace: Value::Null,
            error: None,
            latency_ms: 1,
            feedback: vec![],
        };
        let reviewer = Reviewer { name: "ana".into(), csrf: Some("c".repeat(32)) };
        let html = render(&dag, &run, &reviewer, "/review/run/x", None);
        assert!(html.contains("data-hotkeys"), "{html}");
        assert!(html.contains("<kbd>1</kbd>billing") && html.contains("<kbd>3</kbd>other"), "{html}");
        assert!(html.contains("value=\"billing\" checked"), "the model's answer is preselected");
        assert!(html.contains("role=\"switch\"") && html.contains("value=\"true\" checked"), "{html}");
        assert!(html.contains("&lt;b&gt;") && !html.contains("<b>"), "values are escaped");
        assert!(html.contains("choices rating") && html.contains("name=\"csrf\""), "{html}");
        assert_eq!(html.matches("data-hotkeys").count(), 1, "only one row answers to 1-9");
        run.outputs = None;
        let bare = render(&dag, &run, &reviewer, "/r", None);
        assert!(["billing", "tech", "other"].iter().all(|l| !bare.contains(&format!("value=\"{l}\" checked"))), "no label preselected without outputs");
    }
}
