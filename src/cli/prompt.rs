//! `loopc prompt`: the exact prompt of a step, without calling a model.

use loopc::model::prompting::ModelText;
use loopc::model::provision::{locate_model, Cache};
use loopc::runtime::adapter::{Request, Template};
use loopc::runtime::executor::{Executor, RunOptions, StepParams};
use serde_json::Value;

use super::args::PromptArgs;
use super::progress::ConsoleProgress;
use super::{source, Outcome};

/// Runs `loopc prompt`.
pub fn run(args: &PromptArgs, color: bool) -> anyhow::Result<Outcome> {
    let loaded = source::load(&args.file, color)?;
    let (dag, mut params) = (loaded.dag, loaded.params);
    let step = dag.step_id(&args.step).ok_or_else(|| {
        let names: Vec<&str> = dag.steps().iter().map(|s| s.name.as_str()).collect();
        anyhow::anyhow!("no step `{}` (steps: {})", args.step, names.join(", "))
    })?;
    let inputs = match serde_json::from_str::<Value>(&args.input) {
        Ok(Value::Object(m)) => m,
        _ => anyhow::bail!("--input must be a JSON object"),
    };
    // An artifact's compiled parameters apply unless a template is asked for explicitly.
    if let Some(name) = &args.template {
        let template = Template::from_name(name).ok_or_else(|| anyhow::anyhow!("unknown template `{name}` (chat, json, completion)"))?;
        params.insert(step, StepParams { template, ..StepParams::default() });
    }
    let executor = Executor::new(std::sync::Arc::new(dag), Vec::new(), params, RunOptions::default());
    executor.check_inputs(&inputs)?;
    let request = executor.preview(step, &inputs).ok_or_else(|| anyhow::anyhow!("step `{}` calls a tool; it has no prompt", args.step))?;
    match &args.model {
        Some(model) => print!("{}", exact(&request, model)?),
        None => print!("{}", show(&request)),
    }
    Ok(Outcome::Success)
}

/// The exact text `model` is sent for `request` (its chat template applied), under a line
/// saying how many tokens it is and how many of them every example shares.
fn exact(request: &Request, model: &str) -> anyhow::Result<String> {
    let cache = Cache::from_env()?;
    let dir = locate_model(model, &cache, &ConsoleProgress::new())?;
    let text = ModelText::load(&dir, model)?;
    let prompt = request.local_prompt(&text.chat, "")?;
    let (ids, shared) = text.tokenizer.encode_prompt(&prompt.shared, &prompt.rest)?;
    let all = format!("{}{}", prompt.shared, prompt.rest);
    let bos = match text.tokenizer.bos().and_then(|b| text.tokenizer.token_text(b)) {
        Some(bos) if !all.starts_with(&bos) => format!(", after the BOS token `{bos}`"),
        _ => String::new(),
    };
    let format = if text.chat.is_plain() { "no chat template: plain transcript".to_string() } else { format!("{} chat template", text.chat.family().name()) };
    Ok(format!("[exact text sent to {model} ({format}): {} tokens{bos}, the first {shared} shared by every example]\n{all}\n", ids.len()))
}

/// A request as people read it: chat messages and the answer prefix loopc writes, or for the
/// completion template the one text sent as is (it already ends with the answer prefix).
pub(super) fn show(request: &Request) -> String {
    if request.template == Template::Completion {
        return request.messages().iter().map(|m| format!("[completion text, sent as is]\n{}\n", m.content)).collect();
    }
    let mut out: String = request.messages().iter().map(|m| format!("[{}]\n{}\n\n", format!("{:?}", m.role).to_lowercase(), m.content)).collect();
    out.push_str(&format!("[assistant, written by loopc]\n{}\n", request.answer_prefix));
    out
}
