//! Prefill passes: rows of new prompt tokens, each on top of a cached shared prefix (keys and
//! values computed once and kept, least recently used evicted), left-padded to one length.

use std::sync::Arc;

use ort::value::DynValue;

use super::trie::Choices;
use crate::model::error::ModelError;
use crate::model::local::Shared;
use crate::model::session::{self, Decoder, Keep, Past};

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

/// One prompt of a prefill pass: its tokens after the cached prefix, and for a choice scored
/// in the pass, the tree of its labels' continuations.
pub(crate) struct Item<'a> {
    pub suffix: &'a [u32],
    pub tree: Option<Arc<Choices>>,
}

impl Item<'_> {
    fn nodes(&self) -> usize {
        self.tree.as_ref().map_or(0, |t| t.nodes.len())
    }

    /// Positions the item takes in a row.
    pub(crate) fn len(&self) -> usize {
        self.suffix.len() + self.nodes()
    }
}

/// What a prefill pass gave one item.
pub(crate) struct ItemOut {
    /// The row the item sat in.
    pub row: usize,
    /// Logits at the item's last prompt token.
    pub last: Vec<f32>,
    /// Logits after each of its tree nodes (empty without a tree).
    pub nodes: Vec<Vec<f32>>,
    /// The position id the token after its prompt takes.
    pub next_pos: i64,
}

/// What a prefill pass leaves: each item's logits, and everything needed to continue a row
/// from it (the keys and values, the mask and the row's length).
pub(crate) struct Prefill {
    /// Per item, in row order.
    pub items: Vec<ItemOut>,
    /// `present.*` of the pass: `[rows, heads, total, head_dim]` per layer, keys then values
    /// (empty for a pass that nothing continues, see [`Keep`]).
    pub present: Vec<DynValue>,
    /// The attention mask, `[rows, total]`.
    pub mask: Vec<i64>,
    /// Rows in the pass.
    pub rows: usize,
    /// Positions per row (prefix, padding and the items).
    pub total: usize,
}

/// Runs `rows` of items on top of `prefix` (if any). A row is `[prefix][left padding]` then
/// each item's tokens but its last, then every item's last token, then every item's tree
/// nodes: the positions whose logits are wanted form one tail, the same length in every row
/// after left padding, so the LM head runs on that tail only. Items share a row's prefix
/// copy; the tree mask keeps each item to the prefix and its own tokens (and a node to its
/// ancestors), and position ids are each item's own, so packing changes nothing an item
/// computes. Padding is masked out. The keys and values come back only when `keep` asks.
pub(crate) fn first_pass(dec: &mut Decoder, shared: &Shared, rows: &[Vec<Item<'_>>], prefix: Option<&PrefixEntry>, keep: Keep) -> Result<Prefill, ModelError> {
    let b = rows.len();
    let used = |row: &[Item<'_>]| row.iter().map(Item::len).sum::<usize>();
    let s = rows.iter().map(|r| used(r)).max().unwrap_or(0);
    if b == 0 || s == 0 || rows.iter().flatten().any(|it| it.suffix.is_empty()) {
        return Err(ModelError::Request("a prefill pass needs at least one token per prompt".into()));
    }
    let p = prefix.map_or(0, |e| e.len);
    let total = p + s;
    let pad_token = i64::from(shared.pad_token);
    let mut ids = vec![pad_token; b * s];
    let mut positions = vec![0i64; b * s];
    let mut mask = vec![0i64; b * total];
    // Which item (and which of its tokens) each position holds, to build the tree mask.
    let mut owner: Vec<Option<(usize, Slot)>> = vec![None; b * s];
    let mut want = Vec::new();
    let mut items = Vec::new();
    let packed = rows.iter().any(|r| r.len() > 1) || rows.iter().flatten().any(|it| it.tree.is_some());
    for (r, row) in rows.iter().enumerate() {
        let left = s - used(row);
        mask[r * total..r * total + p].fill(1);
        for i in 0..left {
            positions[r * s + i] = p as i64 - 1 + i64::from(p == 0);
        }
        let bodies: usize = row.iter().map(|it| it.suffix.len() - 1).sum();
        let (mut body_at, mut node_at) = (left, left + bodies + row.len());
        for (k, it) in row.iter().enumerate() {
            let len = it.suffix.len();
            let last_at = left + bodies + k;
            let mut put = |at: usize, token: u32, pos: usize, slot: Slot| {
                ids[r * s + at] = i64::from(token);
                positions[r * s + at] = pos as i64;
                mask[r * total + p + at] = 1;
                owner[r * s + at] = Some((k, slot));
            };
            for (i, &t) in it.suffix[..len - 1].iter().enumerate() {
                put(body_at + i, t, p + i, Slot::Prompt);
            }
            put(last_at, it.suffix[len - 1], p + len - 1, Slot::Prompt);
            let nodes = it.tree.as_ref().map_or(&[][..], |t| &t.nodes[..]);
            for (j, node) in nodes.iter().enumerate() {
                put(node_at + j, node.token, p + len + node.depth - 1, Slot::Node(j));
            }
            want.push((r, last_at));
            want.extend((0..nodes.len()).map(|j| (r, node_at + j)));
            items.push((r, body_at, last_at, node_at, nodes.len(), (p + len) as i64));
            body_at += len - 1;
            node_at += nodes.len();
        }
    }
    let tree_mask = packed.then(|| tree_mask(rows, &owner, &items, p, s));
    let past = match prefix {
        None => Past::Empty,
        Some(e) => Past::Host { buffers: e.kv.iter().map(|layer| layer.repeat(b)).collect(), len: e.len },
    };
    let fwd = dec.forward_tree(b, ids, mask.clone(), positions, past, &want, tree_mask, keep)?;
    let new_tokens = rows.iter().map(|r| used(r)).sum();
    shared.count_pass(b, new_tokens, p * b);
    let mut out = fwd.logits.into_iter();
    let mut done = Vec::with_capacity(items.len());
    for (r, _, _, _, nodes, next_pos) in items {
        let last = out.next().ok_or_else(|| ModelError::Ort("fewer logits than asked".into()))?;
        done.push(ItemOut { row: r, last, nodes: out.by_ref().take(nodes).collect(), next_pos });
    }
    Ok(Prefill { items: done, present: fwd.present, mask, rows: b, total })
}

/// What a position holds for its item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// A prompt token.
    Prompt,
    /// Tree node `j`.
    Node(usize),
}

/// The tree mask of a pass, `[rows, 1, s, p + s]`, and-ed with the causal and padding masks:
/// a position sees the prefix and its own item's prompt; a node sees its item's prompt and
/// its own ancestors; nothing sees another item. Padding lines are left open (their keys are
/// masked anyway, and their outputs unread).
fn tree_mask(rows: &[Vec<Item<'_>>], owner: &[Option<(usize, Slot)>], items: &[(usize, usize, usize, usize, usize, i64)], p: usize, s: usize) -> Vec<bool> {
    let total = p + s;
    let mut m = vec![true; rows.len() * s * total];
    let mut first = 0;
    for (r, row) in rows.iter().enumerate() {
        let row_items = &items[first..first + row.len()];
        first += row.len();
        for q in 0..s {
            let Some((k, slot)) = owner[r * s + q] else { continue };
            let line = &mut m[(r * s + q) * total + p..(r * s + q + 1) * total];
            line.fill(false);
            let (_, body_at, last_at, node_at, nodes, _) = row_items[k];
            let body = row[k].suffix.len() - 1;
            line[body_at..body_at + body].fill(true);
            line[last_at] = true;
            match slot {
                Slot::Prompt => {}
                Slot::Node(j) => {
                    if let Some(tree) = &row[k].tree {
                        for a in 0..nodes {
                            line[node_at + a] = tree.sees(j, a);
                        }
                    }
                }
            }
        }
    }
    m
}

/// Logits at each of `positions` of `tokens`, from one pass with nothing cached.
pub(crate) fn logits_at(dec: &mut Decoder, shared: &Shared, tokens: &[u32], positions: &[usize]) -> Result<Vec<Vec<f32>>, ModelError> {
    let n = tokens.len();
    if n == 0 || positions.iter().any(|&p| p >= n) {
        return Err(ModelError::Request(format!("positions {positions:?} are not all within {n} tokens")));
    }
    let ids = tokens.iter().map(|&t| i64::from(t)).collect();
    let want: Vec<(usize, usize)> = positions.iter().map(|&p| (0, p)).collect();
    let fwd = dec.forward_tree(1, ids, vec![1; n], (0..n as i64).collect(), Past::Empty, &want, None, Keep::LogitsOnly)?;
    shared.count_pass(1, n, 0);
    Ok(fwd.logits)
}
