//! Instruction proposals for `instruction_search`: the model is shown a summary of the data
//! (computed here, not by the model), a few demos and the current instruction, plus a seeded
//! "tip" for variety, and asked for a better instruction. Sampling is seeded from the search's
//! generator, so the same seed proposes the same instructions.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::{Map, Value};

use crate::compile::dataset::Example;
use crate::compile::evaluate::Budget;
use crate::graph::{Dag, Field, StepId, Type};
use crate::model::sampling::Sampling;
use crate::model::PromptText;
use crate::runtime::adapter::{Demo, Request, Template};
use crate::runtime::backend::{BackendError, Call};
use crate::Program;

/// The heading of the proposer's prompt.
const PROPOSER: &str = "Each task below has a short instruction. Under it is a better instruction for a language model: one or two sentences, specific to the task, following the tip.";

/// Worked examples of what a better instruction looks like (written for loopc, on tasks
/// unlike the user's so they are not copied): (task, tip, better instruction). Small models
/// follow a pattern far better than a request.
const EXAMPLES: [(&str, &str, &str); 3] = [
    (
        "Task: Classify the review.\nInput: review (text)\nOutput: sentiment, one of positive, negative\nExample: review: The strap broke in a day => sentiment: negative",
        "Name every possible answer and say when each one applies.",
        "Read the customer review and answer positive if the customer is happy with the product, or negative if they complain about it.",
    ),
    (
        "Task: Extract the city.\nInput: address (text)\nOutput: city (text)\nExample: address: 12 Rue Lepic, 75018 Paris => city: Paris",
        "Say which words or details in the input matter most.",
        "Find the town or city name in the postal address, usually next to the postcode, and write only that name.",
    ),
    (
        "Task: Answer the question.\nInputs: passage (text), question (text)\nOutput: answer (text)\nExample: question: Who wrote it? => answer: Ada Lovelace",
        "Keep it short and direct.",
        "Answer the question with a short phrase copied from the passage.",
    ),
];

/// Seeded variety, in the manner of DSPy's proposer tips.
const TIPS: [&str; 6] = [
    "Keep it short and direct.",
    "Name every possible answer and say when each one applies.",
    "Say which words or details in the input matter most.",
    "Write it as an expert in this domain would.",
    "Warn about the most common mistake.",
    "Describe the task step by step.",
];

/// Longest instruction kept (characters); longer answers are rambling, not instructions.
const MAX_LEN: usize = 400;

/// The task as the proposer sees it: the instruction, each field with its type (for label
/// outputs, how often each label occurs in the training data) and a few demos.
pub fn summarize(dag: &Dag, step: StepId, train: &[Example], demos: &[Demo]) -> String {
    let s = dag.step(step);
    let Some(sig) = dag.step_signature(step) else { return String::new() };
    let mut lines = vec![format!("Task: {}", sig.instruction)];
    let fields = |fs: &[Field]| fs.iter().map(|f| format!("{} ({})", f.name, f.ty)).collect::<Vec<_>>().join(", ");
    lines.push(format!("Input: {}", fields(&sig.inputs)));
    lines.push(format!("Output: {}", fields(&sig.outputs)));
    for f in &s.outputs {
        let Type::Label(labels) = &f.ty else { continue };
        let Some(slot) = super::demos::returned_as(dag, step, &f.name) else { continue };
        let mut counts: BTreeMap<&str, usize> = labels.iter().map(|l| (l.as_str(), 0)).collect();
        for ex in train {
            if let Some(c) = ex.fields.get(slot).and_then(Value::as_str).and_then(|l| counts.get_mut(l)) {
                *c += 1;
            }
        }
        let shown: Vec<String> = counts.iter().map(|(l, n)| format!("{l} {n}")).collect();
        lines.push(format!("Answers in {} training examples: {}", train.len(), shown.join(", ")));
    }
    for d in demos.iter().take(3) {
        lines.push(format!("Example: {}", render_demo(d)));
    }
    lines.join("\n")
}

fn render_demo(d: &Demo) -> String {
    let part = |m: &Map<String, Value>| m.iter().map(|(k, v)| format!("{k}: {}", crate::runtime::value::render(v))).collect::<Vec<_>>().join("; ");
    format!("{} => {}", part(&d.inputs), part(&d.outputs))
}

/// Cleans a proposal: the first non-empty line, without quotes or a label like
/// `Instruction:`; `None` when nothing usable is left.
fn clean(raw: &str) -> Option<String> {
    let line = raw.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.strip_prefix("Instruction:").unwrap_or(line).trim();
    let line = line.trim_matches(|c| c == '"' || c == '\'' || c == '`' || c == '*').trim();
    (line.len() >= 15 && line.len() <= MAX_LEN && line.contains(' ')).then(|| line.to_string())
}

/// Up to `n` distinct new instructions for `step`, proposed by its model; the signature's own
/// instruction is not among them. Proposals that come back empty or rambling are dropped, so
/// fewer than `n` may return.
pub async fn instructions(
    program: &Program,
    step: StepId,
    train: &[Example],
    demos: &[Demo],
    n: usize,
    rng: &mut impl Rng,
    budget: &Budget,
) -> Result<Vec<String>, BackendError> {
    let dag = program.dag();
    let Some(sig) = dag.step_signature(step) else { return Ok(Vec::new()) };
    let backend = program.executor().backends()[dag.step(step).model.0].clone();
    let summary = summarize(dag, step, train, demos);
    let mut out: Vec<String> = Vec::new();
    // A few extra attempts make up for dropped proposals without letting a bad model loop.
    for _ in 0..n * 2 {
        if out.len() >= n || budget.exhausted().is_some() {
            break;
        }
        let tip = TIPS[rng.random_range(0..TIPS.len())];
        let request = Request {
            template: Template::Completion,
            system: PROPOSER.into(),
            demos: EXAMPLES
                .iter()
                .map(|(task, tip, better)| (PromptText::markup(format!("{task}\nTip: {tip}")), PromptText::markup(format!(" {better}"))))
                .collect(),
            // The summary quotes training data: it is data, not markup.
            user: PromptText::data(summary.clone()).push_markup(&format!("\nTip: {tip}")).clone(),
            answer_prefix: "Better instruction:".into(),
            demos_shared: true,
            recalled: Vec::new(),
        };
        let sampling = Sampling { temperature: 0.8, top_k: Some(40), top_p: Some(0.95), seed: rng.random() };
        let call = Call { request, answer_so_far: String::new(), max_tokens: 80, sampling, stop: vec!["\n".into()], grammar: None, structured: None };
        let mut done = backend.generate(vec![call]).await?;
        let Some(c) = done.pop() else { continue };
        budget.record_call(&c);
        if let Some(i) = clean(&c.text).filter(|i| *i != sig.instruction && !out.contains(i)) {
            out.push(i);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn proposals_are_cleaned_or_dropped() {
        assert_eq!(
            clean("\n  Instruction: \"Route the ticket to the team that owns it.\"\nmore").as_deref(),
            Some("Route the ticket to the team that owns it.")
        );
        assert_eq!(clean("ok"), None, "too short to be an instruction");
        assert_eq!(clean(&"word ".repeat(200)), None, "rambling");
        assert_eq!(clean("   \n  "), None);
    }
}
