//! Chat templates: how a list of messages becomes the text a model was trained on.
//!
//! A model's own template (`tokenizer.chat_template` in a GGUF, `chat_template` in
//! `tokenizer_config.json`) is Jinja; loopc renders it with minijinja in the environment
//! Hugging Face gives templates (`jinja.rs`). Prompt text keeps its markup and data pieces
//! through the template (`split.rs`), and is split into the part shared by every example
//! and the rest. A model without a template gets a plain transcript.

mod jinja;
mod split;

use super::error::ModelError;
use super::text::PromptText;

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The user's turn.
    User,
    /// The model's turn (for demonstrations).
    Assistant,
}

impl Role {
    /// The role's name in chat templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The speaker.
    pub role: Role,
    /// The text.
    pub content: String,
}

/// The chat format a template follows, recognised by its markers (for display: rendering
/// always runs the template itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFamily {
    /// `<|im_start|>role\n...<|im_end|>` (SmolLM2, Qwen and others).
    ChatMl,
    /// Llama 3's `<|start_header_id|>role<|end_header_id|>`.
    Llama3,
    /// Gemma's `<start_of_turn>role\n...<end_of_turn>`.
    Gemma,
    /// Phi-3's `<|user|>...<|end|>`.
    Phi3,
    /// Mistral and Llama 2's `[INST] ... [/INST]`.
    Instruct,
    /// A template loopc does not recognise (it still runs it).
    Other,
    /// No template: a plain `System: / User: / Assistant:` transcript.
    Plain,
}

impl ChatFamily {
    fn detect(template: &str) -> ChatFamily {
        if template.contains("<|im_start|>") {
            ChatFamily::ChatMl
        } else if template.contains("<|start_header_id|>") {
            ChatFamily::Llama3
        } else if template.contains("<start_of_turn>") {
            ChatFamily::Gemma
        } else if template.contains("<|user|>") && template.contains("<|end|>") {
            ChatFamily::Phi3
        } else if template.contains("[INST]") {
            ChatFamily::Instruct
        } else {
            ChatFamily::Other
        }
    }

    /// A short name for people.
    pub fn name(self) -> &'static str {
        match self {
            ChatFamily::ChatMl => "ChatML",
            ChatFamily::Llama3 => "Llama 3",
            ChatFamily::Gemma => "Gemma",
            ChatFamily::Phi3 => "Phi-3",
            ChatFamily::Instruct => "[INST]",
            ChatFamily::Other => "custom",
            ChatFamily::Plain => "plain transcript",
        }
    }
}

/// A model's chat template, ready to render.
pub struct ChatTemplate {
    family: ChatFamily,
    jinja: Option<Jinja>,
}

struct Jinja {
    env: minijinja::Environment<'static>,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("family", &self.family).finish_non_exhaustive()
    }
}

fn template_error(reason: String) -> ModelError {
    ModelError::ChatTemplate(reason)
}

impl ChatTemplate {
    /// The plain transcript, for models without a template.
    pub fn plain() -> ChatTemplate {
        ChatTemplate { family: ChatFamily::Plain, jinja: None }
    }

    /// A Jinja template, with the model's BOS and EOS token texts as `bos_token` and
    /// `eos_token`. A template that does not compile is an error naming where.
    pub fn jinja(source: &str, bos: Option<&str>, eos: Option<&str>) -> Result<ChatTemplate, ModelError> {
        let env = jinja::environment(source).map_err(|e| template_error(format!("the chat template does not compile: {}", describe(&e))))?;
        let jinja = Jinja { env, bos: bos.unwrap_or_default().to_string(), eos: eos.unwrap_or_default().to_string() };
        Ok(ChatTemplate { family: ChatFamily::detect(source), jinja: Some(jinja) })
    }

    /// The template a `tokenizer_config.json` declares (`chat_template` as a string, or the
    /// `default` of a list of named templates), with its `bos_token` and `eos_token`; the
    /// plain transcript when it declares none.
    pub fn from_tokenizer_config(config: &serde_json::Value) -> Result<ChatTemplate, ModelError> {
        let token = |key: &str| match config.get(key) {
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(v) => v.get("content").and_then(|c| c.as_str()),
            None => None,
        };
        let source = match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(serde_json::Value::Array(named)) => {
                named.iter().find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default")).and_then(|t| t.get("template")).and_then(|t| t.as_str())
            }
            _ => None,
        };
        match source {
            Some(s) if !s.trim().is_empty() => ChatTemplate::jinja(s, token("bos_token"), token("eos_token")),
            _ => Ok(ChatTemplate::plain()),
        }
    }

    /// Which format the template follows.
    pub fn family(&self) -> ChatFamily {
        self.family
    }

    /// Whether this is the plain transcript (the model has no template).
    pub fn is_plain(&self) -> bool {
        self.jinja.is_none()
    }

    /// Renders `messages` exactly as the template does, opening the assistant's turn when
    /// `add_generation_prompt`. No default system prompt is added beyond what the template adds.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ModelError> {
        match &self.jinja {
            Some(j) => {
                let values: Vec<(Role, String)> = messages.iter().map(|m| (m.role, m.content.clone())).collect();
                j.render(&values, add_generation_prompt)
            }
            None => {
                let turns: Vec<(Role, PromptText)> = messages.iter().map(|m| (m.role, PromptText::markup(m.content.clone()))).collect();
                let refs: Vec<(Role, &PromptText)> = turns.iter().map(|(r, t)| (*r, t)).collect();
                Ok(plain(&refs, add_generation_prompt).to_plain())
            }
        }
    }

    /// Renders turns of prompt text and opens the assistant's turn, split into the text the
    /// first `shared` turns fix (identical whatever the later turns say, so it can be cached)
    /// and the rest. Each turn's content keeps its markup and data pieces; the template's own
    /// text is markup. A template that refuses a system turn (some raise an exception) gets the
    /// system text at the head of the first user turn instead, as such models are prompted.
    pub fn render_text(&self, turns: &[(Role, &PromptText)], shared: usize) -> Result<(PromptText, PromptText), ModelError> {
        match &self.jinja {
            Some(j) => split::render(j, turns, shared),
            None => {
                let shared = shared.min(turns.len());
                Ok((plain(&turns[..shared], false), plain(&turns[shared..], true)))
            }
        }
    }
}

impl Jinja {
    /// Renders `(role, content)` messages.
    fn render(&self, messages: &[(Role, String)], add_generation_prompt: bool) -> Result<String, ModelError> {
        let messages: Vec<minijinja::Value> =
            messages.iter().map(|(role, content)| minijinja::context! { role => role.as_str(), content => content }).collect();
        let template = self.env.get_template(jinja::TEMPLATE_NAME).map_err(|e| template_error(describe(&e)))?;
        let ctx = minijinja::context! {
            messages => messages,
            bos_token => &self.bos,
            eos_token => &self.eos,
            add_generation_prompt => add_generation_prompt,
        };
        template.render(ctx).map_err(|e| template_error(format!("the chat template failed: {}", describe(&e))))
    }
}

/// A minijinja error with its line, and the error that caused it.
fn describe(e: &minijinja::Error) -> String {
    let mut text = match (e.detail(), e.line()) {
        (Some(d), Some(line)) => format!("{d} (line {line})"),
        (Some(d), None) => d.to_string(),
        (None, Some(line)) => format!("{} (line {line})", e.kind()),
        (None, None) => e.kind().to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The transcript for models without a template: `System: ...`, `User: ...`, and an open
/// `Assistant:` when asked.
fn plain(turns: &[(Role, &PromptText)], open_assistant: bool) -> PromptText {
    let mut out = PromptText::new();
    for (role, content) in turns {
        let who = match role {
            Role::System => "System",
            Role::User => "User",
            Role::Assistant => "Assistant",
        };
        out.push_markup(&format!("{who}: ")).append(content).push_markup("\n");
    }
    if open_assistant {
        out.push_markup("Assistant:");
    }
    out
}

#[cfg(test)]
mod tests;
