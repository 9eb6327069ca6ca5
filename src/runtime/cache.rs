//! The response cache: a [`Backend`] wrapper that stores completions and label scores on
//! disk, keyed by a hash of (model identity, full request, decoding parameters, seed), so a
//! repeated call is answered instantly and identically. Entries are written atomically.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use sha2::Digest;

use super::backend::{Backend, BackendError, Call, Choice, Completion, Identity};

/// A backend whose answers are cached in a directory.
pub struct CachedBackend {
    inner: Arc<dyn Backend>,
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CachedBackend {
    /// Caches `inner`'s answers under `dir` (created on first write).
    pub fn new(inner: Arc<dyn Backend>, dir: PathBuf) -> CachedBackend {
        CachedBackend { inner, dir, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    fn key(&self, kind: &str, call: &Call, labels: &[String]) -> String {
        let id = self.inner.identity();
        let r = &call.request;
        let material = json!({
            "kind": kind, "provider": id.provider, "model": id.name,
            "template": r.template.name(), "system": r.system, "demos": r.demos, "user": r.user,
            "answer_prefix": r.answer_prefix, "answer_so_far": call.answer_so_far,
            "max_tokens": call.max_tokens, "temperature": call.sampling.temperature,
            "top_k": call.sampling.top_k, "top_p": call.sampling.top_p, "seed": call.sampling.seed,
            "stop": call.stop, "labels": labels,
        });
        crate::model::import::hex(&sha2::Sha256::digest(material.to_string().as_bytes()))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    fn read(&self, key: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.path(key)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(&self, key: &str, v: &Value) {
        // A cache that cannot be written only costs speed; the answer itself is still good.
        let _ = crate::fs::atomic_write(&self.path(key), v.to_string().as_bytes());
    }
}

impl CachedBackend {
    /// Answers each call from the cache where it can, sends the rest to `fetch` in one batch,
    /// and stores what comes back; results are in call order.
    async fn through<T, Fut>(
        &self,
        kind: &str,
        calls: &[Call],
        labels: &[String],
        decode: impl Fn(&Value) -> Option<T>,
        encode: impl Fn(&T) -> Value,
        fetch: impl FnOnce(Vec<Call>) -> Fut,
    ) -> Result<Vec<T>, BackendError>
    where
        Fut: std::future::Future<Output = Result<Vec<T>, BackendError>>,
    {
        let keys: Vec<String> = calls.iter().map(|c| self.key(kind, c, labels)).collect();
        let mut out: Vec<Option<T>> = keys.iter().map(|k| self.read(k).and_then(|v| decode(&v))).collect();
        let missing: Vec<usize> = (0..calls.len()).filter(|&i| out[i].is_none()).collect();
        self.hits.fetch_add((calls.len() - missing.len()) as u64, Ordering::Relaxed);
        self.misses.fetch_add(missing.len() as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            let fresh = fetch(missing.iter().map(|&i| calls[i].clone()).collect()).await?;
            for (&i, answer) in missing.iter().zip(fresh) {
                self.write(&keys[i], &encode(&answer));
                out[i] = Some(answer);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

impl Backend for CachedBackend {
    fn identity(&self) -> Identity {
        self.inner.identity()
    }

    fn generate(&self, calls: Vec<Call>) -> BoxFuture<'_, Result<Vec<Completion>, BackendError>> {
        Box::pin(async move {
            let decode = |v: &Value| {
                Some(Completion {
                    text: v["text"].as_str()?.to_string(),
                    prompt_tokens: v["prompt_tokens"].as_u64()?,
                    cached_tokens: v["cached_tokens"].as_u64()?,
                    completion_tokens: v["completion_tokens"].as_u64()?,
                    from_cache: true,
                })
            };
            let encode = |c: &Completion| json!({"text": c.text, "prompt_tokens": c.prompt_tokens, "cached_tokens": c.cached_tokens, "completion_tokens": c.completion_tokens});
            self.through("generate", &calls, &[], decode, encode, |missing| self.inner.generate(missing)).await
        })
    }

    fn supports_choice(&self) -> bool {
        self.inner.supports_choice()
    }

    fn weights_sha256(&self) -> Option<String> {
        self.inner.weights_sha256()
    }

    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        Box::pin(async move {
            let decode = |v: &Value| {
                let scores: Vec<f32> = v["scores"].as_array()?.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect();
                (scores.len() == labels.len()).then_some(Choice {
                    scores,
                    prompt_tokens: v["prompt_tokens"].as_u64()?,
                    cached_tokens: v["cached_tokens"].as_u64()?,
                    from_cache: true,
                })
            };
            let encode = |c: &Choice| json!({"scores": c.scores, "prompt_tokens": c.prompt_tokens, "cached_tokens": c.cached_tokens});
            self.through("choose", &calls, &labels, decode, encode, |missing| self.inner.choose(missing, labels.clone())).await
        })
    }
}
