//! Chat templates: how a list of messages becomes the text a model was trained on.
//!
//! Hugging Face stores templates as Jinja; loopc recognises the common formats by their
//! markers instead of running Jinja, and falls back to a plain transcript.

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

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The speaker.
    pub role: Role,
    /// The text.
    pub content: String,
}

/// A model's chat format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFormat {
    /// `<|im_start|>role\n...<|im_end|>\n` (SmolLM2, Qwen and others).
    ChatMl,
    /// Llama 3's `<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>`.
    Llama3,
    /// `System: ...\nUser: ...\nAssistant:` for models without a template.
    Plain,
}

impl ChatFormat {
    /// Recognises the format of a Jinja chat template.
    pub fn detect(template: Option<&str>) -> ChatFormat {
        match template {
            Some(t) if t.contains("<|im_start|>") => ChatFormat::ChatMl,
            Some(t) if t.contains("<|start_header_id|>") => ChatFormat::Llama3,
            _ => ChatFormat::Plain,
        }
    }

    /// The token that ends a turn, which generation stops at.
    pub fn end_of_turn(self) -> Option<&'static str> {
        match self {
            ChatFormat::ChatMl => Some("<|im_end|>"),
            ChatFormat::Llama3 => Some("<|eot_id|>"),
            ChatFormat::Plain => None,
        }
    }

    /// Text that opens a conversation (Llama 3's begin-of-text marker), if any.
    pub fn begin(self) -> &'static str {
        match self {
            ChatFormat::Llama3 => "<|begin_of_text|>",
            _ => "",
        }
    }

    /// Renders `messages` and opens the assistant's turn. No default system prompt is added.
    pub fn render(self, messages: &[Message]) -> String {
        format!("{}{}", self.begin(), self.render_turns(messages, true))
    }

    /// Renders turns without the opening marker, so a conversation can be rendered in
    /// pieces that concatenate to the whole; `open_assistant` starts the assistant's turn.
    pub fn render_turns(self, messages: &[Message], open_assistant: bool) -> String {
        let turns: Vec<(Role, PromptText)> = messages.iter().map(|m| (m.role, PromptText::markup(m.content.clone()))).collect();
        let refs: Vec<(Role, &PromptText)> = turns.iter().map(|(r, t)| (*r, t)).collect();
        self.render_text(&refs, open_assistant).to_plain()
    }

    /// [`ChatFormat::render_turns`] for prompt text: the format's markers are markup, each
    /// turn's content keeps its own pieces (so data stays data).
    pub fn render_text(self, turns: &[(Role, &PromptText)], open_assistant: bool) -> PromptText {
        let role = |r: Role| match r {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let mut out = PromptText::new();
        for (r, content) in turns {
            match self {
                ChatFormat::ChatMl => {
                    out.push_markup(&format!("<|im_start|>{}\n", role(*r))).append(content).push_markup("<|im_end|>\n");
                }
                ChatFormat::Llama3 => {
                    out.push_markup(&format!("<|start_header_id|>{}<|end_header_id|>\n\n", role(*r))).append(content).push_markup("<|eot_id|>");
                }
                ChatFormat::Plain => {
                    let who = match r {
                        Role::System => "System",
                        Role::User => "User",
                        Role::Assistant => "Assistant",
                    };
                    out.push_markup(&format!("{who}: ")).append(content).push_markup("\n");
                }
            }
        }
        if open_assistant {
            out.push_markup(match self {
                ChatFormat::ChatMl => "<|im_start|>assistant\n",
                ChatFormat::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
                ChatFormat::Plain => "Assistant:",
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_matches_the_reference_prompt() {
        let msgs = [Message { role: Role::User, content: "What is the capital of France?".into() }];
        assert_eq!(ChatFormat::ChatMl.render(&msgs), "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn formats_are_recognised_by_their_markers() {
        assert_eq!(ChatFormat::detect(Some("{% for m in messages %}<|im_start|>")), ChatFormat::ChatMl);
        assert_eq!(ChatFormat::detect(None), ChatFormat::Plain);
    }
}
