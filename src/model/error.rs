//! The model stage's error type: every way loading, provisioning or running a model fails,
//! each saying what to do next.

use std::path::PathBuf;

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
    /// Occurs when a request is invalid (empty prompt, no labels, prompt too long...).
    #[error("invalid request: {0}")]
    Request(String),
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
