//! Grammar-constrained decoding: a generation may carry a [`Grammar`] (llguidance's Lark
//! dialect), and then every token it samples is one the grammar allows, so the text is in
//! the grammar's language by construction (or cut short by the token limit).
//!
//! The grammar is compiled on the caller's thread when the request is submitted (errors come
//! back at once); the scheduler keeps a [`llguidance::Matcher`] per constrained sequence and
//! asks it for the allowed tokens before each sample. The masks of a decode step are computed
//! for every row at once on rayon while ONNX Runtime runs the step's forward pass: a row's
//! next mask depends only on the tokens it has taken, all known before the pass starts.
//!
//! The model knows nothing of what a grammar means; the runtime writes them.

use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use super::error::ModelError;
use super::tokenizer::Tokenizer;

/// A grammar the generated text must follow, in llguidance's Lark dialect (terminals in
/// `/regex/` or `"literal"`, `%json { schema }` for JSON values).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grammar {
    lark: String,
}

impl Grammar {
    /// A grammar from Lark text (checked when a generation uses it).
    pub fn lark(text: impl Into<String>) -> Grammar {
        Grammar { lark: text.into() }
    }

    /// The grammar's text.
    pub fn text(&self) -> &str {
        &self.lark
    }
}

/// What builds matchers for one model: its token trie and llguidance's parser factory,
/// built on first use (a model that is only asked for labels never pays for it).
pub(crate) struct Constrainer {
    factory: ParserFactory,
}

/// The model's tokenizer as llguidance sees it: the bytes of every token, and tokenizing
/// (for text the grammar forces).
struct Env {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Forced text is grammar text, valid UTF-8 except at a cut; data rules apply to it.
        self.tokenizer.encode_data(&String::from_utf8_lossy(s)).unwrap_or_default()
    }
}

impl Constrainer {
    /// Builds the token trie from `tokenizer.json` (its byte-level vocabulary) for a model whose
    /// logits cover `vocab` tokens and which ends a text with any of `end_tokens`.
    pub(crate) fn new(tokenizer_json: &std::path::Path, tokenizer: &Tokenizer, vocab: usize, end_tokens: &[u32]) -> Result<Constrainer, ModelError> {
        let fail = |reason: String| ModelError::Tokenizer(format!("cannot prepare constrained decoding from `{}`: {reason}", tokenizer_json.display()));
        let bytes = std::fs::read(tokenizer_json).map_err(|e| fail(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
        let mut words = llguidance::token_bytes_from_tokenizer_json(&json).map_err(|e| fail(e.to_string()))?;
        if words.len() > vocab {
            return Err(fail(format!("the tokenizer has {} tokens but the model's logits cover {vocab}", words.len())));
        }
        // Ids past the tokenizer's (padding of the logits) have no bytes: never allowed.
        words.resize(vocab, Vec::new());
        let eos = end_tokens.first().copied().ok_or_else(|| fail("the model has no end-of-text token".into()))?;
        let vocab_size = u32::try_from(vocab).map_err(|_| fail("the vocabulary is too large".into()))?;
        let trie = TokTrie::from(&TokRxInfo::new(vocab_size, eos), &words).with_eos_tokens(end_tokens);
        let env: TokEnv = Arc::new(Env { trie, tokenizer: tokenizer.clone() });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| fail(e.to_string()))?;
        // The library never prints: llguidance's warnings would go to standard error.
        factory.quiet();
        Ok(Constrainer { factory })
    }

    /// A matcher for one generation under `grammar`; a grammar that does not compile is an
    /// error naming llguidance's reason.
    pub(crate) fn start(&self, grammar: &Grammar) -> Result<Matcher, ModelError> {
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_lark(grammar.lark.clone()))
            .map_err(|e| ModelError::Request(format!("the answer's grammar does not compile: {e}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ModelError::Request(format!("the answer's grammar cannot start: {e}")));
        }
        Ok(matcher)
    }
}

/// A model's constrainer, built once on first use and shared by its callers.
#[derive(Default)]
pub(crate) struct LazyConstrainer(OnceLock<Result<Arc<Constrainer>, String>>);

impl LazyConstrainer {
    /// The constrainer, building it with `build` the first time.
    pub(crate) fn get(&self, build: impl FnOnce() -> Result<Constrainer, ModelError>) -> Result<Arc<Constrainer>, ModelError> {
        self.0.get_or_init(|| build().map(Arc::new).map_err(|e| e.to_string())).clone().map_err(ModelError::Tokenizer)
    }
}

/// One row's grammar state in the scheduler.
pub(crate) struct Constraint {
    matcher: Matcher,
    /// The tokens the grammar allows next, as a bitset (bit `t % 32` of word `t / 32`).
    mask: Vec<u32>,
}

impl Constraint {
    pub(crate) fn new(matcher: Matcher) -> Constraint {
        Constraint { matcher, mask: Vec::new() }
    }

    /// Computes the mask of the tokens allowed next (what [`Constraint::mask`] returns).
    pub(crate) fn compute(&mut self) -> Result<(), ModelError> {
        let vob = self.matcher.compute_mask_or_eos().map_err(|e| ModelError::Request(format!("constrained decoding failed: {e}")))?;
        if vob.is_zero() {
            return Err(ModelError::Request("constrained decoding reached a state where no token is allowed".into()));
        }
        self.mask.clear();
        self.mask.extend_from_slice(vob.as_slice());
        Ok(())
    }

    /// The last computed mask.
    pub(crate) fn mask(&self) -> &[u32] {
        &self.mask
    }

    /// Takes the sampled token. Once the grammar is complete the matcher stops and allows only
    /// an end token, which ends the sequence without being fed to it.
    pub(crate) fn take(&mut self, token: u32) -> Result<(), ModelError> {
        if self.matcher.is_stopped() {
            return Ok(());
        }
        self.matcher.consume_token(token).map_err(|e| ModelError::Request(format!("constrained decoding refused token {token}: {e}")))
    }
}
