//! A model's text side: the tokenizer and chat template that turn prompts into the tokens it
//! reads, loaded from a model directory without its weights (so `loopc prompt` can show the
//! exact text a model is sent, and the local model loads them the same way).

use std::path::Path;

use super::chat::ChatTemplate;
use super::error::{io, ModelError};
use super::import::{TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
use super::tokenizer::Tokenizer;

/// The largest `tokenizer_config.json` loopc reads (real ones are kilobytes, some with long
/// templates).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A model's tokenizer and chat template.
pub struct ModelText {
    /// The tokenizer, with the BOS token prompts start with when the model adds one.
    pub tokenizer: Tokenizer,
    /// The chat template (the plain transcript when the model has none).
    pub chat: ChatTemplate,
    /// `tokenizer_config.json` (null when absent).
    pub config: serde_json::Value,
}

impl ModelText {
    /// Loads `tokenizer.json` and `tokenizer_config.json` from the model directory `dir`
    /// (`name` is for messages).
    pub fn load(dir: &Path, name: &str) -> Result<ModelText, ModelError> {
        let bad = |reason: String| ModelError::BadModel { model: name.to_string(), reason };
        let path = dir.join(TOKENIZER_CONFIG_FILE);
        let config = if path.is_file() {
            let size = std::fs::metadata(&path).map_err(io("read", &path))?.len();
            if size > MAX_CONFIG_BYTES {
                return Err(bad(format!("`{}` is {size} bytes, more than a configuration file may be ({MAX_CONFIG_BYTES})", path.display())));
            }
            let bytes = std::fs::read(&path).map_err(io("read", &path))?;
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("`{}` is not valid JSON: {e}", path.display())))?
        } else {
            serde_json::Value::Null
        };
        let mut tokenizer = Tokenizer::from_file(&dir.join(TOKENIZER_FILE))?;
        let chat = ChatTemplate::from_tokenizer_config(&config).map_err(|e| bad(e.to_string()))?;
        tokenizer.set_bos(prompt_bos(&config, &tokenizer));
        Ok(ModelText { tokenizer, chat, config })
    }

    /// The text of a special token the config names (`bos_token`, `eos_token`), as a string or
    /// an added-token object.
    pub fn config_token(&self, key: &str) -> Option<&str> {
        config_token(&self.config, key)
    }
}

fn config_token<'a>(config: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.as_str()),
        v => v.get("content")?.as_str(),
    }
}

/// The BOS token prompts start with: the model's, when its tokenizer config says to add it.
fn prompt_bos(config: &serde_json::Value, tokenizer: &Tokenizer) -> Option<u32> {
    if config.get("add_bos_token").and_then(|v| v.as_bool()) != Some(true) {
        return None;
    }
    tokenizer.token_id(config_token(config, "bos_token")?)
}
