//! The response cache: completions and label scores on disk, keyed by a hash of (model
//! identity and fingerprint, the full request with its markup and data pieces, every decoding
//! parameter, seed and stops), so a repeated call is answered instantly and identically, and
//! a model re-exported with other weights never gets the old model's answers.
//!
//! The cache is bounded: past its size limit the least recently used entries are evicted
//! (a hit refreshes an entry's modification time, which is what recency is read from).
//! Entries are written atomically; a cache that cannot be written only costs speed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::backend::{Backend, BackendError, Call, Choice, Completion, Identity};
use crate::model::{ChoiceBounds, TokenCount};

/// The default size limit: 1 GiB.
pub const DEFAULT_LIMIT_BYTES: u64 = 1 << 30;

/// What the cache holds and has served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries on disk.
    pub entries: u64,
    /// Their total size.
    pub bytes: u64,
    /// The size limit.
    pub limit_bytes: u64,
    /// Calls answered from the cache since this process opened it.
    pub hits: u64,
    /// Calls that went to the model.
    pub misses: u64,
}

/// An on-disk response cache shared by every backend of an engine.
pub struct ResponseCache {
    dir: PathBuf,
    limit: u64,
    /// Bytes on disk, once counted (the directory is scanned on the first write).
    size: Mutex<Option<u64>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ResponseCache {
    /// A cache in `dir` (created on first write) holding at most `limit` bytes.
    pub fn new(dir: PathBuf, limit: u64) -> ResponseCache {
        ResponseCache { dir, limit, size: Mutex::new(None), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Entries, size and this process's hits and misses.
    pub fn stats(&self) -> CacheStats {
        let (entries, bytes) = entries(&self.dir).iter().fold((0, 0), |(n, b), e| (n + 1, b + e.1));
        CacheStats { entries, bytes, limit_bytes: self.limit, hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed) }
    }

    /// Deletes every entry; returns how many there were.
    pub fn clear(&self) -> std::io::Result<u64> {
        let all = entries(&self.dir);
        for (path, _, _) in &all {
            std::fs::remove_file(path)?;
        }
        *self.size.lock().unwrap_or_else(|e| e.into_inner()) = Some(0);
        Ok(all.len() as u64)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    fn read(&self, key: &str) -> Option<Value> {
        let path = self.path(key);
        let text = std::fs::read_to_string(&path).ok()?;
        // A hit makes the entry recent (eviction takes the oldest modification times first).
        if let Ok(f) = std::fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        serde_json::from_str(&text).ok()
    }

    fn write(&self, key: &str, v: &Value) {
        let bytes = v.to_string();
        if crate::fs::atomic_write(&self.path(key), bytes.as_bytes()).is_err() {
            return;
        }
        let mut size = self.size.lock().unwrap_or_else(|e| e.into_inner());
        let total = size.get_or_insert_with(|| entries(&self.dir).iter().map(|e| e.1).sum());
        *total += bytes.len() as u64;
        if *total > self.limit {
            *total = evict(&self.dir, self.limit - self.limit / 10);
        }
    }
}

/// Every entry: path, size and modification time.
fn entries(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(dir) else { return out };
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else { continue };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Ok(m) = f.metadata() {
                    out.push((path, m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
                }
            }
        }
    }
    out
}

/// Deletes the least recently used entries until at most `target` bytes remain; returns the
/// bytes left.
fn evict(dir: &Path, target: u64) -> u64 {
    let mut all = entries(dir);
    all.sort_by_key(|e| e.2);
    let mut total: u64 = all.iter().map(|e| e.1).sum();
    for (path, size, _) in all {
        if total <= target {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= size;
        }
    }
    total
}

/// A backend whose answers go through a [`ResponseCache`].
pub struct CachedBackend {
    inner: Arc<dyn Backend>,
    cache: Arc<ResponseCache>,
}

impl CachedBackend {
    /// Caches `inner`'s answers in `cache`.
    pub fn new(inner: Arc<dyn Backend>, cache: Arc<ResponseCache>) -> CachedBackend {
        CachedBackend { inner, cache }
    }

    fn key(&self, kind: &str, call: &Call, labels: &[String]) -> String {
        let id = self.inner.identity();
        let r = &call.request;
        let material = json!({
            "kind": kind, "provider": id.provider, "model": id.name, "fingerprint": id.fingerprint,
            "template": r.template.name(), "system": r.system, "demos": r.demos, "user": r.user,
            "answer_prefix": r.answer_prefix, "answer_so_far": call.answer_so_far,
            "max_tokens": call.max_tokens, "temperature": call.sampling.temperature,
            "top_k": call.sampling.top_k, "top_p": call.sampling.top_p, "seed": call.sampling.seed,
            "stop": call.stop, "template_stop": r.stop(), "labels": labels,
            // What the answer was constrained to: two programs that differ only in a
            // constraint must not share answers.
            "grammar": call.grammar.as_ref().map(|g| g.text()),
            "structured": call.structured.as_ref().map(|s| json!({"schema": s.schema, "choice": s.choice, "system": s.request.system, "demos": s.request.demos, "user": s.request.user})),
        });
        crate::fs::sha256_hex(material.to_string().as_bytes())
    }

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
        let mut out: Vec<Option<T>> = keys.iter().map(|k| self.cache.read(k).and_then(|v| decode(&v))).collect();
        let missing: Vec<usize> = (0..calls.len()).filter(|&i| out[i].is_none()).collect();
        self.cache.hits.fetch_add((calls.len() - missing.len()) as u64, Ordering::Relaxed);
        self.cache.misses.fetch_add(missing.len() as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            let fresh = fetch(missing.iter().map(|&i| calls[i].clone()).collect()).await?;
            for (&i, answer) in missing.iter().zip(fresh) {
                self.cache.write(&keys[i], &encode(&answer));
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
                    shape: serde_json::from_value(v["shape"].clone()).unwrap_or_default(),
                    structure_note: v["structure_note"].as_str().map(str::to_string),
                })
            };
            let encode = |c: &Completion| {
                json!({"text": c.text, "prompt_tokens": c.prompt_tokens, "cached_tokens": c.cached_tokens, "completion_tokens": c.completion_tokens,
                       "shape": c.shape, "structure_note": c.structure_note})
            };
            self.through("generate", &calls, &[], decode, encode, |missing| self.inner.generate(missing)).await
        })
    }

    fn supports_choice(&self) -> bool {
        self.inner.supports_choice()
    }

    fn enforcement(&self) -> super::backend::Enforcement {
        self.inner.enforcement()
    }

    fn weights_sha256(&self) -> Option<String> {
        self.inner.weights_sha256()
    }

    fn count_tokens(&self, text: &str) -> Option<TokenCount> {
        self.inner.count_tokens(text)
    }

    fn choose(&self, calls: Vec<Call>, labels: Vec<String>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        Box::pin(self.choose_with(calls, labels, None))
    }

    fn choose_bounded(&self, calls: Vec<Call>, labels: Vec<String>, bounds: Arc<ChoiceBounds>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        Box::pin(self.choose_with(calls, labels, Some(bounds)))
    }
}

impl CachedBackend {
    /// Choices through the cache. A bounded choice is kept under its own key, which names its
    /// bounds: its dropped labels carry only upper bounds, so it must never answer a full
    /// choice (nor one decided another way).
    fn choose_with(&self, calls: Vec<Call>, labels: Vec<String>, bounds: Option<Arc<ChoiceBounds>>) -> BoxFuture<'_, Result<Vec<Choice>, BackendError>> {
        Box::pin(async move {
            let kind = match &bounds {
                None => "choose".to_string(),
                Some(b) => format!("choose_bounded {:?}", b.modes),
            };
            let decode = |v: &Value| {
                let scores: Vec<f32> = v["scores"].as_array()?.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect();
                // Entries written before label lengths were kept are misses (answered afresh).
                let label_tokens: Vec<u32> = v["label_tokens"].as_array()?.iter().filter_map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok())).collect();
                (scores.len() == labels.len() && label_tokens.len() == labels.len()).then_some(Choice {
                    scores,
                    label_tokens,
                    prompt_tokens: v["prompt_tokens"].as_u64()?,
                    cached_tokens: v["cached_tokens"].as_u64()?,
                    from_cache: true,
                    pruned: v["pruned"].as_array().map(|a| a.iter().map(|x| x.as_bool().unwrap_or(false)).collect()).unwrap_or_default(),
                })
            };
            let encode = |c: &Choice| json!({"scores": c.scores, "label_tokens": c.label_tokens, "prompt_tokens": c.prompt_tokens, "cached_tokens": c.cached_tokens, "pruned": c.pruned});
            self.through(&kind, &calls, &labels, decode, encode, |missing| match bounds {
                Some(b) => self.inner.choose_bounded(missing, labels.clone(), b),
                None => self.inner.choose(missing, labels.clone()),
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_its_limit_the_cache_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path().to_path_buf(), 1000);
        let entry = json!({"text": "x".repeat(180)});
        let keys: Vec<String> = (0..8).map(|i| crate::fs::sha256_hex(format!("k{i}").as_bytes())).collect();
        for (i, k) in keys.iter().enumerate() {
            cache.write(k, &entry);
            // Distinct modification times, oldest first; key 0 is read (refreshed) along the way.
            std::thread::sleep(std::time::Duration::from_millis(15));
            if i == 3 {
                assert!(cache.read(&keys[0]).is_some());
            }
        }
        let stats = cache.stats();
        assert!(stats.bytes <= 1000, "{stats:?}");
        assert!(cache.read(&keys[0]).is_some(), "a recently read entry survives");
        assert!(cache.read(&keys[1]).is_none(), "the least recently used entry is gone");
        assert!(cache.read(&keys[7]).is_some(), "the newest entry survives");
        assert_eq!(cache.clear().unwrap(), stats.entries);
        assert_eq!(cache.stats().entries, 0);
    }
}
