//! Prefill passes: rows of new prompt tokens, each on top of a cached shared prefix (keys and
//! values computed once and kept, least recently used evicted), left-padded to one length.

use std::sync::Arc;

use ort::value::DynValue;

use crate::model::error::ModelError;
use crate::model::local::Shared;
use crate::model::session::{self, Decoder, Past};

/// A computed prefix: its keys and values (a batch of one, `2 * layers` buffers) and length.
pub(crate) struct PrefixEntry {
    pub kv: Vec<Vec<f32>>,
    pub len: usize,
}

/// Computed prefixes by their tokens, least recently used first.
#[derive(Default)]
pub(crate) struct PrefixCache {
    entries: Vec<(Vec<u32>, Arc<PrefixEntry>)>,
}

impl PrefixCache {
    /// The entry for `tokens`, from the cache or computed (and cached) now. The worker is the
    /// only thread that computes, so concurrent requests with one prefix compute it once.
    pub(crate) fn get_or_compute(&mut self, dec: &mut Decoder, shared: &Shared, tokens: &[u32]) -> Result<Arc<PrefixEntry>, ModelError> {
        if let Some(pos) = self.entries.iter().position(|(t, _)| t == tokens) {
            let hit = self.entries.remove(pos);
            let entry = hit.1.clone();
            self.entries.push(hit);
            return Ok(entry);
        }
        let n = tokens.len();
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let fwd = dec.forward(1, ids, vec![1; n], (0..n as i64).collect(), Past::Empty, &[(0, n - 1)])?;
        shared.count_pass(1, n, 0);
        let entry = Arc::new(PrefixEntry { kv: session::to_host(&fwd.present)?, len: n });
        self.entries.push((tokens.to_vec(), entry.clone()));
        while self.entries.len() > shared.options.prefix_cache_entries.max(1) {
            self.entries.remove(0);
        }
        Ok(entry)
    }
}

/// One row of a prefill pass: the prompt tokens after the cached prefix.
pub(crate) struct Row<'a> {
    pub suffix: &'a [u32],
}

/// What a prefill pass leaves: the last position's logits per row, and everything needed to
/// continue from it (the keys and values, the mask and each row's length).
pub(crate) struct Prefill {
    /// Logits at each row's last prompt token.
    pub logits: Vec<Vec<f32>>,
    /// `present.*` of the pass: `[rows, heads, total, head_dim]` per layer, keys then values.
    pub present: Vec<DynValue>,
    /// The attention mask, `[rows, total]`.
    pub mask: Vec<i64>,
    /// Rows in the pass.
    pub rows: usize,
    /// Positions per row (prefix, padding and suffix).
    pub total: usize,
    /// Tokens of the cached prefix.
    pub prefix_len: usize,
    /// Each row's suffix length.
    pub suffix_lens: Vec<usize>,
}

impl Prefill {
    /// The position id the token after row `r`'s prompt takes.
    pub(crate) fn next_position(&self, r: usize) -> i64 {
        (self.prefix_len + self.suffix_lens[r]) as i64
    }
}

/// Runs `rows` on top of `prefix` (if any). Each row is `[prefix][left padding][suffix]`;
/// padding takes the position of the token before it, which no real token attends to.
pub(crate) fn first_pass(dec: &mut Decoder, shared: &Shared, rows: &[Row<'_>], prefix: Option<&PrefixEntry>) -> Result<Prefill, ModelError> {
    let b = rows.len();
    let s = rows.iter().map(|r| r.suffix.len()).max().unwrap_or(0);
    if b == 0 || s == 0 {
        return Err(ModelError::Request("a prefill pass needs at least one token per row".into()));
    }
    let p = prefix.map_or(0, |e| e.len);
    let pad_token = i64::from(shared.pad_token);
    let mut ids = Vec::with_capacity(b * s);
    let mut mask = Vec::with_capacity(b * (p + s));
    let mut positions = Vec::with_capacity(b * s);
    for row in rows {
        let pad = s - row.suffix.len();
        mask.extend(std::iter::repeat_n(1, p));
        mask.extend(std::iter::repeat_n(0, pad));
        mask.extend(std::iter::repeat_n(1, row.suffix.len()));
        ids.extend(std::iter::repeat_n(pad_token, pad));
        ids.extend(row.suffix.iter().map(|&t| i64::from(t)));
        positions.extend(std::iter::repeat_n(p as i64 - 1 + i64::from(p == 0), pad));
        positions.extend((0..row.suffix.len()).map(|i| (p + i) as i64));
    }
    let past = match prefix {
        None => Past::Empty,
        Some(e) => Past::Host { buffers: e.kv.iter().map(|layer| layer.repeat(b)).collect(), len: e.len },
    };
    let want: Vec<(usize, usize)> = (0..b).map(|r| (r, s - 1)).collect();
    let fwd = dec.forward(b, ids, mask.clone(), positions, past, &want)?;
    let new_tokens = rows.iter().map(|r| r.suffix.len()).sum();
    shared.count_pass(b, new_tokens, p * b);
    Ok(Prefill {
        logits: fwd.logits,
        present: fwd.present,
        mask,
        rows: b,
        total: p + s,
        prefix_len: p,
        suffix_lens: rows.iter().map(|r| r.suffix.len()).collect(),
    })
}

/// Logits at each of `positions` of `tokens`, from one pass with nothing cached.
pub(crate) fn logits_at(dec: &mut Decoder, shared: &Shared, tokens: &[u32], positions: &[usize]) -> Result<Vec<Vec<f32>>, ModelError> {
    let n = tokens.len();
    if n == 0 || positions.iter().any(|&p| p >= n) {
        return Err(ModelError::Request(format!("positions {positions:?} are not all within {n} tokens")));
    }
    let ids = tokens.iter().map(|&t| i64::from(t)).collect();
    let want: Vec<(usize, usize)> = positions.iter().map(|&p| (0, p)).collect();
    let fwd = dec.forward(1, ids, vec![1; n], (0..n as i64).collect(), Past::Empty, &want)?;
    shared.count_pass(1, n, 0);
    Ok(fwd.logits)
}
