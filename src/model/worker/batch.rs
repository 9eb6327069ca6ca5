//! The decode batch: every generating sequence's keys and values side by side
//! (`[rows, heads, length, head_dim]` per layer), stepped one token at a time.
//!
//! Between steps the batch changes shape: sequences join from a prefill pass (their rows are
//! copied in, left-padded to a common length: the attention mask hides the padding, and
//! position ids are per row, so padding changes nothing a row computes), and sequences that
//! finish leave as dead rows (masked, fed padding) until dead rows are half the batch, when
//! the live ones are copied out. While the shape holds, a step's outputs feed the next step
//! without a copy.

use super::pass::Prefill;
use super::Sequence;
use crate::model::error::ModelError;
use crate::model::local::Shared;
use crate::model::session::{self, Decoder, KvShape, Past};

/// A sequence joining the batch after its prefill.
pub(crate) struct Joining {
    /// Its row in the prefill pass.
    pub row: usize,
    /// The position id of its next token.
    pub next_pos: i64,
    /// The token to feed next (sampled from the prefill's logits).
    pub pending: u32,
    /// The sequence.
    pub seq: Sequence,
}

struct Slot {
    seq: Option<Sequence>,
    next_pos: i64,
    pending: u32,
}

/// The sequences being generated and their keys and values.
pub(crate) struct DecodeBatch {
    kv: KvShape,
    slots: Vec<Slot>,
    past: Option<Past>,
    mask: Vec<i64>,
    len: usize,
}

impl DecodeBatch {
    pub(crate) fn new(kv: KvShape) -> DecodeBatch {
        DecodeBatch { kv, slots: Vec::new(), past: None, mask: Vec::new(), len: 0 }
    }

    /// Whether no sequence is generating.
    pub(crate) fn is_empty(&self) -> bool {
        self.alive() == 0
    }

    /// Sequences generating.
    pub(crate) fn alive(&self) -> usize {
        self.slots.iter().filter(|s| s.seq.is_some()).count()
    }

    /// Positions of keys and values the batch may come to hold with `rows` more sequences
    /// whose prompt and answer take up to `len` positions: every row is as long as the
    /// longest, and rows grow by the tokens they may still generate.
    pub(crate) fn kv_after_join(&self, rows: usize, len: usize) -> usize {
        let remaining = self.slots.iter().filter_map(|s| s.seq.as_ref()).map(|q| q.max_tokens.saturating_sub(q.tokens.len())).max().unwrap_or(0);
        (self.alive() + rows) * (self.len + remaining).max(len)
    }

    /// Drops sequences whose callers stopped waiting.
    pub(crate) fn drop_cancelled(&mut self) {
        for s in &mut self.slots {
            if s.seq.as_ref().is_some_and(|q| q.reply.is_closed()) {
                s.seq = None;
            }
        }
    }

    /// Answers every sequence with `e` and empties the batch.
    pub(crate) fn fail_all(&mut self, e: &ModelError) {
        for s in self.slots.drain(..) {
            if let Some(seq) = s.seq {
                seq.reply.send(Err(e.duplicate()));
            }
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.slots.clear();
        self.past = None;
        self.mask.clear();
        self.len = 0;
    }

    /// Adds `joining` (rows of `prefill`) to the batch, keeping the live sequences.
    pub(crate) fn join(&mut self, prefill: &Prefill, joining: Vec<Joining>) -> Result<(), ModelError> {
        // Rows are copied straight from the tensors into the new buffers: no host copy of
        // the whole batch in between, which would double the batch's memory at every join.
        let past = self.past.take();
        let old = layers(past.as_ref(), 2 * self.kv.layers)?;
        let new = session::layer_slices(&prefill.present)?;
        let keep: Vec<usize> = (0..self.slots.len()).filter(|&r| self.slots[r].seq.is_some()).collect();
        let len = if keep.is_empty() { prefill.total } else { self.len.max(prefill.total) };
        let rows = keep.len() + joining.len();
        let (heads, dim) = (self.kv.heads, self.kv.head_dim);
        let mut buffers = Vec::with_capacity(old.len());
        for (old_layer, new_layer) in old.iter().zip(&new) {
            let mut out = vec![0f32; rows * heads * len * dim];
            for (to, &r) in keep.iter().enumerate() {
                copy_row(old_layer, self.len, r, 0, &mut out, len, to, len - self.len, heads, dim);
            }
            for (k, j) in joining.iter().enumerate() {
                copy_row(new_layer, prefill.total, j.row, 0, &mut out, len, keep.len() + k, len - prefill.total, heads, dim);
            }
            buffers.push(out);
        }
        let mut mask = Vec::with_capacity(rows * len);
        for &r in &keep {
            mask.extend(std::iter::repeat_n(0, len - self.len));
            mask.extend_from_slice(&self.mask[r * self.len..(r + 1) * self.len]);
        }
        for j in &joining {
            mask.extend(std::iter::repeat_n(0, len - prefill.total));
            mask.extend_from_slice(&prefill.mask[j.row * prefill.total..(j.row + 1) * prefill.total]);
        }
        let mut slots: Vec<Slot> = Vec::with_capacity(rows);
        for r in keep {
            let s = &mut self.slots[r];
            slots.push(Slot { seq: s.seq.take(), next_pos: s.next_pos, pending: s.pending });
        }
        slots.extend(joining.into_iter().map(|j| Slot { seq: Some(j.seq), next_pos: j.next_pos, pending: j.pending }));
        self.slots = slots;
        self.mask = mask;
        self.len = len;
        self.past = Some(Past::Host { buffers, len });
        Ok(())
    }

    /// Feeds every sequence its pending token and samples the next.
    pub(crate) fn step(&mut self, dec: &mut Decoder, shared: &Shared) -> Result<(), ModelError> {
        let b = self.slots.len();
        let pad = i64::from(shared.pad_token);
        let ids: Vec<i64> = self.slots.iter().map(|s| if s.seq.is_some() { i64::from(s.pending) } else { pad }).collect();
        let positions: Vec<i64> = self.slots.iter().map(|s| s.next_pos).collect();
        let mut mask = Vec::with_capacity(b * (self.len + 1));
        for (r, s) in self.slots.iter().enumerate() {
            mask.extend_from_slice(&self.mask[r * self.len..(r + 1) * self.len]);
            mask.push(i64::from(s.seq.is_some()));
        }
        let past = self.past.take().unwrap_or(Past::Empty);
        let want: Vec<(usize, usize)> = (0..b).map(|r| (r, 0)).collect();
        // Grammar masks for the tokens this step samples depend only on the tokens taken so
        // far: compute them (every row at once) while ONNX Runtime runs the pass.
        let (fwd, prepared) = prepare_during(&mut self.slots, || dec.forward(b, ids, mask.clone(), positions, past, &want));
        let fwd = fwd?;
        shared.count_step(self.alive());
        self.mask = mask;
        self.len += 1;
        self.past = Some(Past::Device(fwd.present));
        for ((r, slot), ready) in self.slots.iter_mut().enumerate().zip(prepared) {
            let Some(seq) = slot.seq.as_mut() else { continue };
            if let Err(e) = ready {
                if let Some(seq) = slot.seq.take() {
                    seq.reply.send(Err(e));
                }
                continue;
            }
            let tok = seq.pick(&fwd.logits[r]);
            shared.count_generated(1);
            slot.next_pos += 1;
            slot.pending = tok;
            match seq.push(tok, shared) {
                Ok(None) => {}
                Ok(Some(how)) => {
                    if let Some(seq) = slot.seq.take() {
                        seq.finish(how, shared);
                    }
                }
                Err(e) => {
                    if let Some(seq) = slot.seq.take() {
                        seq.reply.send(Err(e));
                    }
                }
            }
        }
        let alive = self.alive();
        if alive == 0 {
            self.reset();
        } else if 2 * alive < self.slots.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Copies the live rows out, dropping dead rows and padding columns no live row uses.
    fn compact(&mut self) -> Result<(), ModelError> {
        let past = self.past.take();
        let old = layers(past.as_ref(), 2 * self.kv.layers)?;
        let keep: Vec<usize> = (0..self.slots.len()).filter(|&r| self.slots[r].seq.is_some()).collect();
        let cut = keep.iter().map(|&r| self.mask[r * self.len..(r + 1) * self.len].iter().take_while(|&&m| m == 0).count()).min().unwrap_or(0);
        let len = self.len - cut;
        let (heads, dim) = (self.kv.heads, self.kv.head_dim);
        let mut buffers = Vec::with_capacity(old.len());
        for layer in &old {
            let mut out = vec![0f32; keep.len() * heads * len * dim];
            for (to, &r) in keep.iter().enumerate() {
                copy_row(layer, self.len, r, cut, &mut out, len, to, 0, heads, dim);
            }
            buffers.push(out);
        }
        let mask = keep.iter().flat_map(|&r| self.mask[r * self.len + cut..(r + 1) * self.len].iter().copied()).collect();
        let slots = keep.iter().map(|&r| {
            let s = &mut self.slots[r];
            Slot { seq: s.seq.take(), next_pos: s.next_pos, pending: s.pending }
        });
        self.slots = slots.collect();
        self.mask = mask;
        self.len = len;
        self.past = Some(Past::Host { buffers, len });
        Ok(())
    }
}

/// Runs `pass` while the constrained sequences of `slots` compute their next masks on
/// rayon (rows in parallel); returns the pass's result and each slot's preparation.
fn prepare_during<T: Send>(slots: &mut [Slot], pass: impl FnOnce() -> T + Send) -> (T, Vec<Result<(), ModelError>>) {
    use rayon::prelude::*;
    let constrained = slots.iter().any(|s| s.seq.as_ref().is_some_and(|q| q.constraint.is_some()));
    if !constrained {
        return (pass(), slots.iter().map(|_| Ok(())).collect());
    }
    rayon::join(pass, || slots.par_iter_mut().map(|s| s.seq.as_mut().map_or(Ok(()), Sequence::prepare)).collect())
}

/// Copies row `r` of a `[_, heads, src_len, dim]` buffer, from column `from` on, into row `to`
/// of a `[_, heads, dst_len, dim]` buffer starting at column `at`.
#[allow(clippy::too_many_arguments)]
fn copy_row(src: &[f32], src_len: usize, r: usize, from: usize, dst: &mut [f32], dst_len: usize, to: usize, at: usize, heads: usize, dim: usize) {
    let cols = src_len - from;
    for h in 0..heads {
        let s = ((r * heads + h) * src_len + from) * dim;
        let d = ((to * heads + h) * dst_len + at) * dim;
        dst[d..d + cols * dim].copy_from_slice(&src[s..s + cols * dim]);
    }
}

/// The keys and values of `past`, one slice per layer (empty slices when there is none).
fn layers(past: Option<&Past>, n: usize) -> Result<Vec<&[f32]>, ModelError> {
    match past {
        Some(Past::Host { buffers, .. }) => Ok(buffers.iter().map(Vec::as_slice).collect()),
        Some(Past::Device(values)) => session::layer_slices(values),
        None | Some(Past::Empty) => Ok(vec![&[][..]; n]),
    }
}

#[cfg(test)]
mod tests {
    use super::copy_row;

    #[test]
    fn rows_are_copied_left_padded_and_trimmed() {
        // Two rows, one head, length 2, dim 1: [[1, 2], [3, 4]].
        let src = [1.0, 2.0, 3.0, 4.0];
        let mut dst = vec![0.0; 3];
        copy_row(&src, 2, 1, 0, &mut dst, 3, 0, 1, 1, 1);
        assert_eq!(dst, [0.0, 3.0, 4.0]);
        let mut trimmed = vec![0.0; 1];
        copy_row(&src, 2, 0, 1, &mut trimmed, 1, 0, 0, 1, 1);
        assert_eq!(trimmed, [2.0]);
    }
}
