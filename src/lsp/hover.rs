//! Hover: what the name under the cursor is. The type of an input, output or step field; a
//! signature's fields and instruction; a step's kind, fields and model; a model's settings
//! as it will use them (defaults filled in); a metric's definition; and the language's own
//! words (keywords, types, functions) from the reference.

use std::fmt::Write as _;

use super::analysis::{item_source, Analysis};
use super::catalog;
use super::index::{Symbol, SymbolId, SymbolKind};
use super::lexer::TokenKind;
use crate::graph::{resolve_model, Provider, DEFAULT_LOCAL_MODEL};
use crate::syntax::ast::{Item, StepKind};
use crate::syntax::Span;

/// Markdown describing what stands at byte `offset`, and the span it describes.
pub fn hover(a: &Analysis, offset: usize) -> Option<(String, Span)> {
    if let Some(found) = step_field(a, offset) {
        return Some(found);
    }
    if let Some((id, span)) = a.index.at(offset) {
        return Some((symbol(a, id), span));
    }
    let (i, word) = a.word_at(offset)?;
    let doc = catalog::describe(word)?;
    Some((format!("`{word}`: {doc}"), a.tokens[i].span))
}

/// `STEP.FIELD` with the cursor on `FIELD`: the field's type and where it comes from.
fn step_field(a: &Analysis, offset: usize) -> Option<(String, Span)> {
    let (i, field) = a.word_at(offset)?;
    if i < 2 || !a.tokens[i - 1].is('.') || a.tokens[i - 2].kind != TokenKind::Word {
        return None;
    }
    let step_name = a.tokens[i - 2].text(&a.text);
    let step = a.index.find(SymbolKind::Step, None, step_name)?;
    let step = &a.index.symbols[step];
    let (name, ty, source) = a.index.step_outputs(step).into_iter().find(|(n, _, _)| n == field)?;
    let (kind, target) = step.step.clone()?;
    let mut md = format!("```loop\n{step_name}.{name}: {ty}\n```\nAn output of step `{step_name}` (`{} {target}`).", kind.keyword());
    match (&source, name.as_str()) {
        (Some(id), _) => description(a, *id, &mut md),
        (None, "reasoning") => md.push_str("\n\n`chain_of_thought` adds it: the model thinks step by step before answering."),
        (None, _) => md.push_str("\n\nA tool call's one field: what the tool returned."),
    }
    Some((md, a.tokens[i].span))
}

/// The description a field declares, as a paragraph.
fn description(a: &Analysis, id: SymbolId, md: &mut String) {
    let Some(file) = &a.file else { return };
    let s = &a.index.symbols[id];
    let desc = match &file.items[s.item] {
        Item::Input(f) | Item::Output(f) => f.description.as_ref(),
        Item::Signature(sig) => sig.fields.iter().find(|f| f.field.name.span.range() == s.def.range()).and_then(|f| f.field.description.as_ref()),
        _ => None,
    };
    if let Some(d) = desc {
        let _ = write!(md, "\n\n{}", d.value);
    }
}

fn symbol(a: &Analysis, id: SymbolId) -> String {
    let s = &a.index.symbols[id];
    let Some(file) = &a.file else { return String::new() };
    let item = &file.items[s.item];
    let mut md = String::new();
    match s.kind {
        SymbolKind::Input | SymbolKind::Output => {
            let _ = write!(md, "```loop\n{}\n```", item_source(item));
            description(a, id, &mut md);
        }
        SymbolKind::SigInput | SymbolKind::SigOutput => {
            let dir = if s.kind == SymbolKind::SigInput { "in" } else { "out" };
            let sig = s.parent.map(|p| a.index.symbols[p].name.as_str()).unwrap_or_default();
            let _ = write!(
                md,
                "```loop\n{dir} {}: {}\n```\nAn {} of signature `{sig}`.",
                s.name,
                s.ty.as_deref().unwrap_or(""),
                if dir == "in" { "input" } else { "output" }
            );
            description(a, id, &mut md);
        }
        SymbolKind::Signature => {
            let _ = write!(md, "```loop\n{}\n```", item_source(item));
            let users: Vec<String> =
                a.index.all(SymbolKind::Step, None).filter(|(_, st)| a.index.step_signature(st) == Some(id)).map(|(_, st)| format!("`{}`", st.name)).collect();
            if !users.is_empty() {
                let _ = write!(md, "\n\nUsed by {}.", users.join(", "));
            }
        }
        SymbolKind::Step => step(a, s, &mut md),
        SymbolKind::Tool | SymbolKind::Metric | SymbolKind::Feedback | SymbolKind::Example => {
            let _ = write!(md, "```loop\n{}\n```", item_source(item));
            if let Item::Metric(m) = item {
                if let Some(doc) = catalog::describe(&m.function.name) {
                    let _ = write!(md, "\n\n{doc} Every metric scores in [0, 1].");
                }
            }
            if let Item::Example(e) = item {
                md.push_str(if e.held_out.is_some() {
                    "\n\nA test only (`held_out`): `loopc compile` does not train on it."
                } else {
                    "\n\nA test (`loopc test`) and training data for `loopc compile`."
                });
            }
        }
        SymbolKind::ToolParam => {
            let tool = s.parent.map(|p| a.index.symbols[p].name.as_str()).unwrap_or_default();
            let _ = write!(
                md,
                "```loop\n{}: {}\n```\nA parameter of tool `{tool}`; `{{{}}}` in its templates is the value.",
                s.name,
                s.ty.as_deref().unwrap_or(""),
                s.name
            );
        }
        SymbolKind::Model => model(item, &mut md),
    }
    md
}

fn step(a: &Analysis, s: &Symbol, md: &mut String) {
    let Some((kind, target)) = &s.step else { return };
    let _ = write!(md, "```loop\nstep {} = {} {target}\n```", s.name, kind.keyword());
    let fields = a.index.step_outputs(s);
    if !fields.is_empty() {
        md.push_str("\n\nGives:");
        for (name, ty, _) in fields {
            let _ = write!(md, "\n- `{}.{name}: {ty}`", s.name);
        }
    }
    if *kind == StepKind::Call {
        return;
    }
    let Some(Item::Step(decl)) = a.file.as_ref().map(|f| &f.items[s.item]) else { return };
    let model = match &decl.model {
        Some(m) => format!("model `{}`", m.name),
        None => match a.index.find(SymbolKind::Model, None, "default") {
            Some(_) => "model `default`".into(),
            None => match a.index.all(SymbolKind::Model, None).collect::<Vec<_>>().as_slice() {
                [(_, only)] => format!("model `{}` (the only one declared)", only.name),
                [] => format!("the built-in local model `onnx(\"{DEFAULT_LOCAL_MODEL}\")`"),
                _ => "no model: name one `default` or add `using MODEL`".into(),
            },
        },
    };
    let _ = write!(md, "\n\nRuns on {model}.");
}

/// A model's declaration and the settings it will run with.
fn model(item: &Item, md: &mut String) {
    let _ = write!(md, "```loop\n{}\n```", item_source(item));
    let Item::Model(decl) = item else { return };
    let Some(spec) = resolve_model(decl) else {
        md.push_str("\n\n(The declaration has problems; see the diagnostics.)");
        return;
    };
    let written = |key: &str| decl.config.entries.iter().any(|e| e.name.name == key);
    let mut rows: Vec<(&str, String)> = Vec::new();
    match &spec.provider {
        Provider::Onnx { model } => rows.push(("local ONNX model", format!("`{model}`"))),
        Provider::OpenAi { base_urls, model, api_key_env } => {
            rows.push(("OpenAI-compatible model", format!("`{model}`")));
            rows.push(("endpoints", base_urls.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", ")));
            rows.push(("api_key_env", api_key_env.as_ref().map_or("none".into(), |k| format!("`{k}`"))));
        }
    }
    let p = &spec.params;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "unset".into());
    rows.push(("temperature", format!("{}{}", p.temperature, if p.temperature == 0.0 { " (greedy)" } else { "" })));
    rows.push(("top_p", opt(p.top_p.map(|v| v.to_string()))));
    rows.push(("top_k", opt(p.top_k.map(|v| v.to_string()))));
    rows.push(("max_tokens", p.max_tokens.to_string()));
    rows.push(("seed", opt(p.seed.map(|v| v.to_string()))));
    rows.push(("stop", if p.stop.is_empty() { "none".into() } else { format!("{:?}", p.stop) }));
    rows.push(("timeout_ms", opt(p.timeout_ms.map(|v| v.to_string()))));
    rows.push(("concurrency", opt(p.concurrency.map(|v| v.to_string()))));
    rows.push(("retries", opt(p.retries.map(|v| v.to_string()))));
    if matches!(spec.provider, Provider::OpenAi { .. }) {
        rows.push(("max_response_bytes", p.max_response_bytes.map_or("8 MiB (default)".into(), |v| v.to_string())));
    }
    md.push_str("\n\n| setting | value |\n|---|---|");
    for (key, value) in rows {
        let default = catalog::MODEL_SETTINGS.iter().any(|(k, _)| *k == key) && !written(key);
        let _ = write!(md, "\n| {key} | {value}{} |", if default { " (default)" } else { "" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "program p\ninput ticket: text \"the customer's message\"\noutput category: label(billing, bug)\n\
        model default = onnx(\"smollm2-135m-instruct\") { max_tokens: 64 }\n\
        signature Classify \"Classify the ticket.\" { in ticket: text out category: label(billing, bug) \"the team\" }\n\
        step classify = chain_of_thought Classify { ticket: input.ticket }\n\
        return { category: classify.category }\n\
        metric ok = exact(output.category, example.category)\n";

    fn hover_at(needle: &str, nth: usize, into: usize) -> String {
        let a = Analysis::new(SRC.into());
        let at = SRC.match_indices(needle).nth(nth).unwrap().0 + into;
        hover(&a, at).map(|(md, _)| md).unwrap_or_default()
    }

    #[test]
    fn hovering_an_input_shows_its_type_and_description() {
        let md = hover_at("input.ticket", 0, 7);
        assert!(md.contains("input ticket: text"), "{md}");
        assert!(md.contains("the customer's message"), "{md}");
    }

    #[test]
    fn hovering_a_step_field_shows_its_type_and_signature() {
        let md = hover_at("classify.category", 0, 10);
        assert!(md.contains("classify.category: label(billing, bug)"), "{md}");
        assert!(md.contains("chain_of_thought Classify") && md.contains("the team"), "{md}");
        let md = hover_at("step classify", 0, 6);
        assert!(md.contains("`classify.reasoning: text`") && md.contains("Runs on model `default`"), "{md}");
    }

    #[test]
    fn hovering_a_signature_shows_its_fields_and_instruction() {
        let md = hover_at("Classify", 0, 1);
        assert!(md.contains("signature Classify \"Classify the ticket.\"") && md.contains("in ticket: text"), "{md}");
        assert!(md.contains("Used by `classify`"), "{md}");
    }

    #[test]
    fn hovering_a_model_shows_its_settings_with_defaults() {
        let md = hover_at("model default", 0, 7);
        assert!(md.contains("| max_tokens | 64 |"), "{md}");
        assert!(md.contains("| temperature | 0 (greedy) (default) |"), "{md}");
        assert!(md.contains("`smollm2-135m-instruct`"), "{md}");
    }

    #[test]
    fn hovering_a_metric_or_a_keyword_shows_its_definition() {
        let md = hover_at("metric ok", 0, 7);
        assert!(md.contains("metric ok = exact(output.category, example.category)") && md.contains("1 when equal"), "{md}");
        let md = hover_at("chain_of_thought", 0, 3);
        assert!(md.contains("reason first"), "{md}");
    }
}
