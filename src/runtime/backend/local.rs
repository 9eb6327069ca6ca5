//! The local ONNX model as a [`Backend`]: each call goes to the model's scheduler, which
//! batches it with every other run's calls; this side only renders and tokenizes.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{AnswerShape, Backend, BackendError, Call, Choice, Completion, Enforcement, Identity};
use crate::model::{ChoiceBounds, GenerateRequest, LocalModel, PrefixCaching, TokenCount};

/// Prompts longer than this are tokenized on the blocking pool rather than on an async worker.
const INLINE_BYTES: usize = 16 * 1024;

/// The local ONNX model.
pub struct LocalBackend {
    model: Arc<LocalModel>,
    caching: PrefixCaching,
}

impl LocalBackend {
    /// Wraps a loaded model.
    pub fn new(model: Arc<LocalModel>, caching: PrefixCaching) -> LocalBackend {
        LocalBackend { model, caching }
    }

    /// The model.
    pub fn model(&self) -> &Arc<LocalModel> {
        &self.model
    }
}

/// Runs `start` (tokenize and submit) inline for small prompts, on the blocking pool for big
/// ones, then awaits the scheduler's answer.
async fn submit<T: Send + 'static>(
    bytes: usize,
    start: impl FnOnce() -> Result<crate::model::Pending<T>, crate::model::ModelError> + Send + 'static,
) -> Result<T, BackendError> {
    let pending = if bytes <= INLINE_BYTES {
        start()?
    } else {
        tokio::task::spawn_blocking(start).await.map_err(|e| BackendError::Unsupported(format!("the tokenizing task failed: {e}")))??
    };
    Ok(pending.await?)
}

impl Backend for LocalBackend {
    fn identity(&self) -> Identity {
        Identity { provider: "onnx".into(), name: self.model.name().to_string(), fingerprint: Some(self.model.fingerprint().full.clone()) }
    }

    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
        Box::pin(async move {
            let runs = calls.into_iter().map(|c| {
                let prompt = c.request.local_prompt(self.model.chat_template(), &c.answer_so_far);
                let stop: Vec<String> = c.request.stop().into_iter().chain(c.stop.iter().cloned()).collect();
                let (max_tokens, sampling, grammar) = (c.max_tokens, c.sampling.clone(), c.grammar.clone());
                let (model, caching) = (self.model.clone(), self.caching);
                async move {
                    let prompt = prompt?;
                    let bytes = prompt.shared.len() + prompt.rest.len();
                    let request = GenerateRequest { prompt, max_tokens, sampling, stop, grammar };
                    let g = submit(bytes, move || model.start_generate(&request, caching)).await?;
                    Ok::<_, BackendError>(Completion {
                        text: g.text,
                        prompt_tokens: g.prompt_tokens as u64,
                        cached_tokens: g.cached_tokens as u64,
                        completion_tokens: g.tokens.len() as u64,
                        from_cache: false,
                        shape: AnswerShape::Template,
                        structure_note: None,
                    })
                }
            });
            futures_util::future::try_join_all(runs).await
        })
    }

    fn supports_choice(&self) -> bool {
        true
    }

    fn enforcement(&self) -> Enforcement {
        Enforcement::Grammar
    }

    fn weights_sha256(&self) -> Option<String> {
        Some(self.model.fingerprint().weights.clone())
    }

    fn count_tokens(&self, text: &str) -> Option<TokenCount> {
        self.model.count_tokens(text).ok()
    }

    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        Box::pin(self.choose_with(calls, labels, None))
    }

    fn choose_bounded(&self, calls: Vec<Call>, labels: Vec<String>, bounds: Arc<ChoiceBounds>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        Box::pin(self.choose_with(calls, labels, Some(bounds)))
    }
}

impl LocalBackend {
    /// Scores `labels` after each call's prompt, in full or (with `bounds`) as far as the
    /// decision needs.
    async fn choose_with(&self, calls: Vec<Call>, labels: Vec<String>, bounds: Option<Arc<ChoiceBounds>>) -> Result<Vec<Choice>, BackendError> {
        let labels = Arc::new(labels);
        let runs = calls.into_iter().map(|c| {
            let prompt = c.request.local_prompt(self.model.chat_template(), &c.answer_so_far);
            let (model, caching, labels, bounds) = (self.model.clone(), self.caching, labels.clone(), bounds.clone());
            async move {
                let prompt = prompt?;
                let bytes = prompt.shared.len() + prompt.rest.len();
                let s = submit(bytes, move || match bounds {
                    Some(b) => model.start_choose_bounded(&prompt, &labels, caching, b),
                    None => model.start_choose(&prompt, &labels, caching),
                })
                .await?;
                Ok::<_, BackendError>(Choice {
                    scores: s.scores,
                    label_tokens: s.choice_tokens.iter().map(|&n| u32::try_from(n).unwrap_or(u32::MAX)).collect(),
                    prompt_tokens: s.prompt_tokens as u64,
                    cached_tokens: s.cached_tokens as u64,
                    from_cache: false,
                    pruned: s.pruned,
                })
            }
        });
        futures_util::future::try_join_all(runs).await
    }
}
