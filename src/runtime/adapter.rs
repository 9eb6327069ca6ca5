//! **Adapters:** turn a signature, its instruction, demos and bound inputs into a model
//! request, in one of three templates, and read the model's answer back into fields.
//!
//! - `chat`: field markers (`[[ ## name ## ]]`) in chat turns, demos as earlier turns.
//! - `json`: chat turns whose inputs and answers are JSON objects.
//! - `completion`: one plain text with `Name: value` lines, demos separated by blank lines,
//!   no chat template (small models often follow this best).
//!
//! The template is a parameter the compiler searches over.

use serde_json::{Map, Value};

use super::value::{read, render, Repair};
use crate::graph::{Field, Type};
use crate::model::chat::{ChatTemplate, Message, Role};
use crate::model::{ModelError, Prompt, PromptText};

/// A prompt template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// Field markers in chat turns.
    Chat,
    /// JSON objects in chat turns.
    Json,
    /// Plain `Name: value` text without a chat template.
    Completion,
}

impl Template {
    /// The template by its name in `.loop` files (`chat`, `json`, `completion`).
    pub fn from_name(name: &str) -> Option<Template> {
        Some(match name {
            "chat" => Template::Chat,
            "json" => Template::Json,
            "completion" => Template::Completion,
            _ => return None,
        })
    }

    /// The template's name.
    pub fn name(self) -> &'static str {
        match self {
            Template::Chat => "chat",
            Template::Json => "json",
            Template::Completion => "completion",
        }
    }
}

/// A demonstration: one example's inputs and outputs for a step.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Demo {
    /// Values of the signature's inputs.
    pub inputs: Map<String, Value>,
    /// Values of the step's outputs.
    pub outputs: Map<String, Value>,
}

/// What a step asks of the model.
#[derive(Clone, Copy, Debug)]
pub struct Task<'a> {
    /// The instruction.
    pub instruction: &'a str,
    /// The fields given to the model.
    pub inputs: &'a [Field],
    /// The fields it must produce, in order (`reasoning` first for chain of thought).
    pub outputs: &'a [Field],
}

/// A rendered request: the parts every backend needs, before any chat format is applied.
/// Values (inputs, demo values, earlier answers) are data in the text: special tokens typed
/// into them stay characters (see [`PromptText`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The template used.
    pub template: Template,
    /// The system message (chat, json) or the text heading the prompt (completion).
    pub system: PromptText,
    /// Demonstrations as (user turn, assistant turn) pairs.
    pub demos: Vec<(PromptText, PromptText)>,
    /// The final user turn with this example's inputs.
    pub user: PromptText,
    /// Text the answer starts with, written by loopc so the model continues in format.
    pub answer_prefix: String,
    /// Whether the demos belong to the prompt's shared (cacheable) part. They do unless they
    /// were chosen for this input (retrieved demos differ per input, so only the instruction
    /// is shared).
    pub demos_shared: bool,
    /// The trailing demos recalled from memory for this input (see [`super::memory`]): each
    /// one's reference and outputs. They are never shared, and a trace shows them by
    /// reference, without their inputs.
    pub recalled: Vec<(String, Map<String, Value>)>,
}

/// The marker that ends a chat answer.
pub(crate) const COMPLETED: &str = "[[ ## completed ## ]]";

/// How loopc opens a field's value in a chat answer. Writing the opening bracket (and quote)
/// itself keeps small models from writing prose or markers where a list belongs; a `json`
/// field opens with `[` when its description speaks of a list, else with `{`.
fn opener(field: &Field) -> &'static str {
    match &field.ty {
        Type::List(inner) if matches!(**inner, Type::Text | Type::Label(_)) => "[\"",
        Type::List(_) => "[",
        Type::Json if field.description.as_deref().is_some_and(|d| d.contains("list")) => "[",
        Type::Json => "{",
        _ => "",
    }
}

/// A chat field marker: `[[ ## name ## ]]`.
pub(crate) fn marker(name: &str) -> String {
    format!("[[ ## {name} ## ]]")
}

/// The label a completion-style prompt gives a field: `ticket_text` → `Ticket text`.
pub(crate) fn title(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn type_hint(ty: &Type) -> String {
    match ty {
        Type::Label(labels) => format!("one of: {}", labels.join(", ")),
        Type::Constrained(rule) => rule.describe(),
        Type::List(inner) if matches!(**inner, Type::Constrained(_)) => format!("a JSON list; each item {}", type_hint(inner)),
        Type::List(inner) => format!("a JSON list of {}", type_hint(inner)),
        Type::Json => "JSON".into(),
        other => other.to_string(),
    }
}

fn field_list(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| {
            let desc = f.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
            format!("- `{}` ({}){desc}", f.name, type_hint(&f.ty))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn value_of<'v>(values: &'v Map<String, Value>, name: &str) -> &'v Value {
    values.get(name).unwrap_or(&Value::Null)
}

fn marked(fields: &[Field], values: &Map<String, Value>) -> PromptText {
    let mut t = PromptText::new();
    for (i, f) in fields.iter().enumerate() {
        t.push_markup(&format!("{}{}\n", if i > 0 { "\n\n" } else { "" }, marker(&f.name)));
        t.push_data(&render(value_of(values, &f.name)));
    }
    t
}

fn json_object(fields: &[Field], values: &Map<String, Value>) -> PromptText {
    let obj: Map<String, Value> = fields.iter().map(|f| (f.name.clone(), value_of(values, &f.name).clone())).collect();
    PromptText::data(Value::Object(obj).to_string())
}

fn lines(fields: &[Field], values: &Map<String, Value>) -> PromptText {
    let mut t = PromptText::new();
    for (i, f) in fields.iter().enumerate() {
        t.push_markup(&format!("{}{}: ", if i > 0 { "\n" } else { "" }, title(&f.name)));
        t.push_data(&render(value_of(values, &f.name)));
    }
    t
}

/// A completion-style answer: the first value right after the prefix, then `Name: value` lines.
fn completion_answer(outputs: &[Field], values: &Map<String, Value>) -> PromptText {
    let mut out = PromptText::new();
    for (i, f) in outputs.iter().enumerate() {
        if i > 0 {
            out.push_markup(&format!("\n{}:", title(&f.name)));
        }
        out.push_markup(" ");
        out.push_data(&render(value_of(values, &f.name)));
    }
    out
}

/// Renders `task` with `demos` for an example whose inputs are `inputs`.
pub fn render_request(template: Template, task: &Task<'_>, demos: &[Demo], inputs: &Map<String, Value>) -> Request {
    let first = task.outputs.first().map_or("answer", |f| f.name.as_str());
    match template {
        Template::Chat => {
            // Markers only, no value placeholders: small models copy placeholders verbatim.
            let markers = task.outputs.iter().map(|f| format!("`{}`", marker(&f.name))).collect::<Vec<_>>().join(", ");
            Request {
                template,
                system: PromptText::markup(format!(
                    "{}\n\nYou are given these fields:\n{}\n\nProduce these fields:\n{}\n\nWrite each field after its marker: {markers}, then end with `{COMPLETED}`.",
                    task.instruction.trim(),
                    field_list(task.inputs),
                    field_list(task.outputs)
                )),
                demos: demos
                    .iter()
                    .map(|d| {
                        let mut answer = marked(task.outputs, &d.outputs);
                        answer.push_markup(&format!("\n\n{COMPLETED}"));
                        (marked(task.inputs, &d.inputs), answer)
                    })
                    .collect(),
                user: marked(task.inputs, inputs),
                answer_prefix: format!("{}\n{}", marker(first), task.outputs.first().map_or("", opener)),
                demos_shared: true,
                recalled: Vec::new(),
            }
        }
        Template::Json => Request {
            template,
            system: PromptText::markup(format!(
                "{}\n\nYou are given a JSON object with these fields:\n{}\n\nAnswer with one JSON object with these fields, and nothing else:\n{}",
                task.instruction.trim(),
                field_list(task.inputs),
                field_list(task.outputs)
            )),
            demos: demos.iter().map(|d| (json_object(task.inputs, &d.inputs), json_object(task.outputs, &d.outputs))).collect(),
            user: json_object(task.inputs, inputs),
            answer_prefix: format!("{{\"{first}\": "),
            demos_shared: true,
            recalled: Vec::new(),
        },
        Template::Completion => Request {
            template,
            system: PromptText::markup(task.instruction.trim()),
            demos: demos.iter().map(|d| (lines(task.inputs, &d.inputs), completion_answer(task.outputs, &d.outputs))).collect(),
            user: lines(task.inputs, inputs),
            answer_prefix: format!("{}:", title(first)),
            demos_shared: true,
            recalled: Vec::new(),
        },
    }
}

impl Request {
    /// The request as sent to a backend that decodes the answer under its grammar
    /// ([`super::structure::grammar`]): the answer prefix ends where the grammar starts. In
    /// chat that is right after the first marker (loopc no longer opens a list or object
    /// itself: the grammar allows only a value of the type, an empty list included); in JSON
    /// the grammar writes the whole object.
    pub fn constrained(mut self, outputs: &[Field]) -> Request {
        let first = outputs.first().map_or("answer", |f| f.name.as_str());
        match self.template {
            Template::Chat => self.answer_prefix = format!("{}\n", marker(first)),
            Template::Json => self.answer_prefix = String::new(),
            Template::Completion => {}
        }
        self
    }

    /// The chat messages for a remote chat API (the answer prefix cannot be forced there).
    pub fn messages(&self) -> Vec<Message> {
        self.turns().into_iter().map(|(role, content)| Message { role, content: content.to_plain() }).collect()
    }

    /// The turns of the conversation, before the answer.
    fn turns(&self) -> Vec<(Role, PromptText)> {
        match self.template {
            Template::Completion => vec![(Role::User, self.completion_text())],
            _ => {
                let mut m = vec![(Role::System, self.system.clone())];
                for (u, a) in &self.demos {
                    m.push((Role::User, u.clone()));
                    m.push((Role::Assistant, a.clone()));
                }
                m.push((Role::User, self.user.clone()));
                m
            }
        }
    }

    /// The whole prompt as the text a person would read (chat turns labelled by role).
    /// Demos recalled from memory show as their reference instead of their inputs (another
    /// user's words stay out of this run's trace).
    pub fn display(&self) -> String {
        let mut shown = self.clone();
        let first = shown.demos.len() - shown.recalled.len().min(shown.demos.len());
        for ((user, _), (reference, _)) in shown.demos[first..].iter_mut().zip(&self.recalled) {
            *user = PromptText::markup(format!("(recalled from memory: {reference})"));
        }
        shown.messages().iter().map(|m| format!("[{:?}]\n{}", m.role, m.content)).collect::<Vec<_>>().join("\n\n")
    }

    /// How many leading demos belong to the shared (cacheable) part of the prompt: all of them
    /// but those recalled for this input, or none when the demos were retrieved per input.
    fn shared_demos(&self) -> usize {
        if self.demos_shared {
            self.demos.len() - self.recalled.len().min(self.demos.len())
        } else {
            0
        }
    }

    /// The completion template's prompt: heading, demos, then this example, blank-line separated.
    fn completion_text(&self) -> PromptText {
        let mut t = self.completion_shared();
        t.append(&self.completion_tail());
        t
    }

    fn completion_shared(&self) -> PromptText {
        let mut t = self.system.clone();
        t.push_markup("\n\n");
        t.append(&self.completion_demos(&self.demos[..self.shared_demos()]));
        t
    }

    fn completion_demos(&self, demos: &[(PromptText, PromptText)]) -> PromptText {
        let mut t = PromptText::new();
        for (u, a) in demos {
            t.append(u);
            t.push_markup(&format!("\n{}", self.answer_prefix));
            t.append(a);
            t.push_markup("\n\n");
        }
        t
    }

    fn completion_tail(&self) -> PromptText {
        let mut t = self.completion_demos(&self.demos[self.shared_demos()..]);
        t.append(&self.user);
        t.push_markup(&format!("\n{}", self.answer_prefix));
        t
    }

    /// The prompt for a local model with chat template `chat`, split so everything before this
    /// example (instruction and demos) is the shared, cacheable part. `answer` is assistant
    /// text already written after the answer prefix (empty to start the answer); it is data.
    /// Fails when the model's template refuses the conversation.
    pub fn local_prompt(&self, chat: &ChatTemplate, answer: &str) -> Result<Prompt, ModelError> {
        let (shared, mut rest) = match self.template {
            Template::Completion => (self.completion_shared(), self.completion_tail()),
            _ => {
                let mut turns = vec![(Role::System, &self.system)];
                for (u, a) in &self.demos {
                    turns.push((Role::User, u));
                    turns.push((Role::Assistant, a));
                }
                // Retrieved and recalled demos differ per input: they are not shared.
                let split = 1 + 2 * self.shared_demos();
                turns.push((Role::User, &self.user));
                let (shared, mut rest) = chat.render_text(&turns, split)?;
                rest.push_markup(&self.answer_prefix);
                (shared, rest)
            }
        };
        rest.push_data(answer);
        Ok(Prompt { shared, rest })
    }

    /// Stop sequences that end the answer.
    pub fn stop(&self) -> Vec<String> {
        match self.template {
            Template::Chat => vec![COMPLETED.to_string()],
            Template::Json => Vec::new(),
            Template::Completion => vec!["\n\n".to_string()],
        }
    }

    /// The answer so far, cleaned, followed by the opening of `field`, so the model can be
    /// asked to continue with exactly that field (small models often stop or ramble after
    /// reasoning instead of writing the next marker). `None` where the template cannot.
    pub fn continue_with(&self, outputs: &[Field], answer: &str, field: &str) -> Option<String> {
        self.continue_from(outputs, answer, field, true)
    }

    /// [`Request::continue_with`], opening the field's value (`["`, `[`, `{`) only when `open`:
    /// a continuation decoded under the rest of the answer's grammar starts at the value.
    pub fn continue_from(&self, outputs: &[Field], answer: &str, field: &str, open: bool) -> Option<String> {
        // Drop trailing lines that open a bracket but are not a marker loopc knows.
        let mut kept: Vec<&str> = answer.trim_end().lines().collect();
        while kept.last().is_some_and(|l| l.trim_start().starts_with('[') && !l.contains("[[ ## ")) {
            kept.pop();
        }
        let body = kept.join("\n");
        let body = body.trim_end();
        match self.template {
            Template::Chat => {
                let opening = if open { outputs.iter().find(|f| f.name == field).map_or("", opener) } else { "" };
                Some(format!("{body}\n\n{}\n{opening}", marker(field)))
            }
            Template::Completion => Some(format!("{body}\n{}:", title(field))),
            Template::Json => None,
        }
    }

    /// How a label is written right after the answer prefix, for constrained choice.
    pub fn choice_text(&self, label: &str) -> String {
        match self.template {
            Template::Chat => label.to_string(),
            Template::Json => Value::String(label.to_string()).to_string(),
            Template::Completion => format!(" {label}"),
        }
    }

    /// Reads the answer (the text after the answer prefix) into the output fields.
    pub fn parse(&self, outputs: &[Field], answer: &str) -> Result<Map<String, Value>, ParseError> {
        self.parse_repaired(outputs, answer).map(|(values, _)| values)
    }

    /// Reads the answer into the output fields, with every repair the reading took (see
    /// [`Repair`]). A value that does not fit its type and constraints is an error; so is, in
    /// a chat answer, a value holding marker syntax (`[[ ## x ## ]]`, `## x ##`): that is a
    /// field the model wrote into the wrong place, never a value.
    pub fn parse_repaired(&self, outputs: &[Field], answer: &str) -> Result<(Map<String, Value>, Vec<FieldRepair>), ParseError> {
        let full = format!("{}{answer}", self.answer_prefix);
        let mut repairs = Vec::new();
        let raw = match self.template {
            Template::Chat => split_marked(outputs, &full),
            // A model may also repeat the opening brace and key: then the answer stands alone.
            Template::Json => {
                let (fields, fixes) = split_json(outputs, &full).or_else(|e| split_json(outputs, answer).map_err(|_| e))?;
                // Repairs of the object as a whole belong to no one field.
                repairs.extend(fixes.into_iter().map(|repair| FieldRepair { field: String::new(), repair }));
                fields
            }
            Template::Completion => split_lines(outputs, &full),
        };
        let mut values = Map::new();
        for f in outputs {
            let Some(r) = raw.iter().find(|(n, _)| n == &f.name).map(|(_, v)| v) else {
                return Err(ParseError { field: f.name.clone(), problem: ParseProblem::Missing });
            };
            let invalid = |reason: String| ParseError { field: f.name.clone(), problem: ParseProblem::Invalid(reason) };
            let (v, fixes) = match r {
                Value::String(s) => read(&f.ty, s),
                other => match super::value::check_type(&f.ty, other) {
                    Ok(()) => Ok((other.clone(), Vec::new())),
                    Err(e) => read(&f.ty, &other.to_string()).map_err(|_| e),
                },
            }
            .map_err(invalid)?;
            if self.template == Template::Chat {
                if let Some(m) = marker_in(&v) {
                    return Err(invalid(format!("the value holds the field marker `{m}`")));
                }
            }
            repairs.extend(fixes.into_iter().map(|repair| FieldRepair { field: f.name.clone(), repair }));
            values.insert(f.name.clone(), v);
        }
        Ok((values, repairs))
    }
}

/// A repair made while reading one field of an answer (recorded in the step's trace).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldRepair {
    /// The output field; empty for a repair of the answer as a whole (a JSON answer's object).
    pub field: String,
    /// What was fixed.
    pub repair: Repair,
}

/// Marker syntax inside a value (a string anywhere in it), if any: `[[ ## x ## ]]` or a
/// fragment such as `## people ##` or `## completed ## ]`.
fn marker_in(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            let fragment = t.contains("[[ ##") || t.contains("## ]]") || {
                // `## name ##`: two `##` around a word.
                let parts: Vec<&str> = t.split("##").collect();
                parts.len() >= 3
                    && parts[1..parts.len() - 1].iter().any(|p| {
                        let w = p.trim();
                        !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
            };
            fragment.then(|| t.chars().take(40).collect())
        }
        Value::Array(items) => items.iter().find_map(marker_in),
        Value::Object(o) => o.values().find_map(marker_in),
        _ => None,
    }
}

/// Why an answer could not be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct ParseError {
    /// The output field.
    pub field: String,
    /// What was wrong.
    pub problem: ParseProblem,
}

/// What was wrong with an answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseProblem {
    /// Occurs when the answer has no value for the field (it can be asked for again).
    #[error("the answer has no value for it")]
    Missing,
    /// Occurs when a JSON answer holds no JSON object.
    #[error("no JSON object in the answer: `{0}`")]
    NoJsonObject(String),
    /// Occurs when the value does not convert to the field's type.
    #[error("{0}")]
    Invalid(String),
}

fn split_marked(outputs: &[Field], text: &str) -> Vec<(String, Value)> {
    let text = text.split(COMPLETED).next().unwrap_or(text);
    let mut found = Vec::new();
    for f in outputs {
        let m = marker(&f.name);
        // The answer may repeat the marker loopc already wrote (remote models cannot be made
        // to continue a prefix): take the first occurrence that has a value under it.
        let bodies: Vec<&str> = text
            .match_indices(&m)
            .map(|(start, _)| {
                let body = &text[start + m.len()..];
                body[..body.find("[[ ##").unwrap_or(body.len())].trim()
            })
            .collect();
        if let Some(first) = bodies.first() {
            let value = bodies.iter().find(|b| !b.is_empty()).unwrap_or(first);
            found.push((f.name.clone(), Value::String(value.to_string())));
        }
    }
    found
}

/// The fields of a JSON answer, by name, with the repairs reading it took.
type JsonFields = (Vec<(String, Value)>, Vec<Repair>);

fn split_json(outputs: &[Field], text: &str) -> Result<JsonFields, ParseError> {
    let (obj, fixes) = super::value::read_object(text).map_err(|_| ParseError {
        field: outputs.first().map_or(String::new(), |f| f.name.clone()),
        problem: ParseProblem::NoJsonObject(text.chars().take(80).collect()),
    })?;
    Ok((obj.into_iter().collect(), fixes))
}

fn split_lines(outputs: &[Field], text: &str) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for (i, f) in outputs.iter().enumerate() {
        let prefix = format!("{}:", title(&f.name));
        let Some(start) = text.find(&prefix) else { continue };
        let body = &text[start + prefix.len()..];
        let end = outputs[i + 1..].iter().filter_map(|n| body.find(&format!("\n{}:", title(&n.name)))).min().unwrap_or(body.len());
        found.push((f.name.clone(), Value::String(body[..end].trim().to_string())));
    }
    found
}
