//! **Models:** the local ONNX backend: provisioning ONNX Runtime and model files into a
//! cache, importing GGUF models, and generating text, batched and with a prefix KV cache.
//!
//! This stage knows nothing of `.loop` programs; it takes prompts and returns text and
//! scores.

mod bounds;
pub mod chat;
mod error;
mod fingerprint;
pub mod gguf;
mod grammar;
pub mod import;
mod local;
pub mod onnx;
pub mod progress;
pub mod prompting;
pub mod provision;
pub mod quant;
pub mod sampling;
mod session;
pub mod source;
#[doc(hidden)]
pub mod testing;
pub mod text;
pub mod tokenizer;
mod verify;
mod worker;

#[cfg(test)]
mod quant_tests;
#[cfg(test)]
mod tests;

pub use self::bounds::{Adjust, ChoiceBounds};
pub use self::error::ModelError;
pub use self::fingerprint::{fingerprint_of, model_sha256};
pub use self::grammar::Grammar;
pub use self::import::Precision;
pub use self::local::{ChoiceScores, Fingerprint, Finish, GenerateRequest, Generation, LoadOptions, LocalModel, Pending, PrefixCaching, Prompt, Stats};
pub use self::session::{default_threads, init_runtime, KvShape};
pub use self::text::{Piece, PromptText};
pub use self::tokenizer::TokenCount;
