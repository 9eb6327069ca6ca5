//! The model stage's error type: every way loading, provisioning or running a model fails,
//! each saying what to do next.

use std::path::PathBuf;

use super::tokenizer::TokenCount;

/// An error of the local model backend.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Occurs when a file cannot be read or written.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// What was being done ("read", "write", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Occurs when a GGUF file is malformed or uses something loopc cannot convert.
    #[error("`{path}` is not a usable GGUF file: {reason}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Occurs when a model directory lacks a file or has a wrong one.
    #[error("model `{model}`: {reason}")]
    BadModel {
        /// The model's name or path.
        model: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// Occurs when no model of that name is in the cache and it cannot be provisioned.
    #[error("unknown model `{name}`: {hint}")]
    UnknownModel {
        /// The requested name.
        name: String,
        /// What exists, or how to add it.
        hint: String,
    },
    /// Occurs when provisioning (ONNX Runtime or model files) fails.
    #[error("cannot provision {what}: {reason}")]
    Provision {
        /// What was being provisioned.
        what: String,
        /// Why it failed, and what to install or set.
        reason: String,
    },
    /// Occurs when ONNX Runtime cannot be loaded from a library file.
    #[error("cannot load ONNX Runtime from `{path}`: {reason}\n  help: point ORT_DYLIB_PATH at a libonnxruntime shared library of version 1.22 or newer, or unset it to let loopc provision one")]
    Runtime {
        /// The library tried.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// Occurs when ONNX Runtime reports an error while loading or running a model.
    #[error("onnx runtime: {0}")]
    Ort(String),
    /// Occurs when the tokenizer fails.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Occurs when a model's chat template does not compile or fails to render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// Occurs when a request is invalid (empty prompt, no labels...).
    #[error("invalid request: {0}")]
    Request(String),
    /// Occurs when a prompt leaves no room in the model's context.
    #[error("the prompt is {tokens}, over the model's context of {limit} tokens")]
    ContextOverflow {
        /// The prompt's size.
        tokens: TokenCount,
        /// The model's context length.
        limit: usize,
    },
}

impl ModelError {
    /// A copy of the error for another caller (an I/O cause is kept as its message), so one
    /// failed batch can answer each of its requests.
    pub fn duplicate(&self) -> ModelError {
        match self {
            ModelError::Io { action, path, source } => {
                ModelError::Io { action, path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            ModelError::Gguf { path, reason } => ModelError::Gguf { path: path.clone(), reason: reason.clone() },
            ModelError::BadModel { model, reason } => ModelError::BadModel { model: model.clone(), reason: reason.clone() },
            ModelError::UnknownModel { name, hint } => ModelError::UnknownModel { name: name.clone(), hint: hint.clone() },
            ModelError::Provision { what, reason } => ModelError::Provision { what: what.clone(), reason: reason.clone() },
            ModelError::Runtime { path, reason } => ModelError::Runtime { path: path.clone(), reason: reason.clone() },
            ModelError::Ort(m) => ModelError::Ort(m.clone()),
            ModelError::Tokenizer(m) => ModelError::Tokenizer(m.clone()),
            ModelError::Request(m) => ModelError::Request(m.clone()),
            ModelError::ChatTemplate(m) => ModelError::ChatTemplate(m.clone()),
            ModelError::ContextOverflow { tokens, limit } => ModelError::ContextOverflow { tokens: *tokens, limit: *limit },
        }
    }
}

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        ModelError::Ort(e.to_string())
    }
}

/// Wraps an I/O error with the action and path.
pub(crate) fn io<'p>(action: &'static str, path: &'p std::path::Path) -> impl FnOnce(std::io::Error) -> ModelError + 'p {
    move |source| ModelError::Io { action, path: path.to_path_buf(), source }
}
