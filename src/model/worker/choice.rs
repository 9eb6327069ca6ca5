//! Constrained choice after a prefill pass: each choice's log-probability given the prompt.
//!
//! The first token of every choice is scored from the prompt's last logits. When the model
//! takes a tree mask, the rest came in the same pass (see [`super::trie`]). Otherwise choices
//! longer than one token add the rest in a second pass, one row per (prompt, long choice) on
//! a copy of that prompt's keys and values, the choice's tokens but the last right-padded
//! (causal attention keeps padding out of earlier positions); rows of many jobs share it.
//!
//! A bounded choice (only the decision wanted) carries no tree in the prompt's pass: its tree
//! is fed afterwards, best first and a few nodes per pass, as far as its bounds need (see
//! `bounds.rs`). The bounded choices of one prompt pass are expanded together: each pass
//! carries the next nodes of every prompt still unsettled, one row per prompt.

use super::pass::Prefill;
use super::ChoiceJob;
use crate::model::bounds::{ChoiceBounds, Search};
use crate::model::error::ModelError;
use crate::model::local::{ChoiceScores, Shared};
use crate::model::sampling::log_prob;
use crate::model::session::{self, Decoder, Keep, Past};

/// Scores every job (each at its item of `fwd`) and answers it.
pub(crate) fn score(dec: &mut Decoder, shared: &Shared, fwd: &Prefill, jobs: Vec<(usize, ChoiceJob)>, cached: usize) {
    // Bounded choices feed their trees now, together; the others are scored together.
    let (bounded_jobs, jobs): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(_, j)| j.bounds.is_some() && shared.tree);
    if !bounded_jobs.is_empty() {
        let result = {
            let with_bounds: Vec<(usize, &ChoiceJob, &ChoiceBounds)> =
                bounded_jobs.iter().filter_map(|(r, j)| j.bounds.as_deref().map(|b| (*r, j, b))).collect();
            bounded(dec, shared, fwd, &with_bounds)
        };
        let mut answers = match result {
            Ok(a) => a.into_iter().map(Ok).collect(),
            Err(e) => bounded_jobs.iter().map(|_| Err(e.duplicate())).collect::<Vec<_>>(),
        };
        answers.resize_with(bounded_jobs.len(), || Err(ModelError::Request("no bounds".into())));
        for ((_, job), answer) in bounded_jobs.into_iter().zip(answers) {
            let answer = answer.map(|(scores, pruned)| ChoiceScores {
                scores,
                prompt_tokens: job.prompt.ids.len(),
                cached_tokens: cached,
                choice_tokens: job.choices.ids.iter().map(Vec::len).collect(),
                pruned,
            });
            job.reply.send(answer);
        }
    }
    if jobs.is_empty() {
        return;
    }
    let in_pass = |r: usize, j: &ChoiceJob| !j.choices.nodes.is_empty() && fwd.items[r].nodes.len() == j.choices.nodes.len();
    let mut scores: Vec<Vec<f32>> = jobs
        .iter()
        .map(|(r, j)| {
            if in_pass(*r, j) {
                j.choices.scores(&fwd.items[*r].last, &fwd.items[*r].nodes)
            } else {
                j.choices.ids.iter().map(|ids| ids.first().map_or(f32::NEG_INFINITY, |&t| log_prob(&fwd.items[*r].last, t))).collect()
            }
        })
        .collect();
    let long: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .filter(|(_, (r, j))| !in_pass(*r, j))
        .flat_map(|(k, (_, j))| (0..j.choices.ids.len()).filter(move |&c| j.choices.ids[c].len() > 1).map(move |c| (k, c)))
        .collect();
    let result = if long.is_empty() { Ok(()) } else { second_pass(dec, shared, fwd, &jobs, &long, &mut scores) };
    for ((_, job), row) in jobs.into_iter().zip(scores) {
        let answer = match &result {
            Ok(()) => Ok(ChoiceScores {
                scores: row,
                prompt_tokens: job.prompt.ids.len(),
                cached_tokens: cached,
                choice_tokens: job.choices.ids.iter().map(Vec::len).collect(),
                pruned: Vec::new(),
            }),
            Err(e) => Err(e.duplicate()),
        };
        job.reply.send(answer);
    }
}

/// Adds the log-probabilities of the tokens after the first, for each (job, choice) in `long`.
fn second_pass(
    dec: &mut Decoder,
    shared: &Shared,
    fwd: &Prefill,
    jobs: &[(usize, ChoiceJob)],
    long: &[(usize, usize)],
    scores: &mut [Vec<f32>],
) -> Result<(), ModelError> {
    let host = session::layer_slices(&fwd.present)?;
    let total = fwd.total;
    let per_row = host.first().map_or(0, |l| l.len() / fwd.rows.max(1));
    let opts = &shared.options;
    let pad = i64::from(shared.pad_token);
    let mut start = 0;
    while start < long.len() {
        // As many rows as the batch and the key/value budget allow (at least one).
        let mut end = start + 1;
        let mut width = body(jobs, long[start]).len();
        while end < long.len() && end - start < opts.max_batch.max(1) {
            let w = width.max(body(jobs, long[end]).len());
            if (end + 1 - start) * (total + w) > opts.kv_budget_tokens {
                break;
            }
            width = w;
            end += 1;
        }
        let rows = &long[start..end];
        let n = rows.len();
        let mut ids = Vec::with_capacity(n * width);
        let mut mask = Vec::with_capacity(n * (total + width));
        let mut pos = Vec::with_capacity(n * width);
        let mut want = Vec::new();
        for (i, &(k, c)) in rows.iter().enumerate() {
            let item = &fwd.items[jobs[k].0];
            let (r, next) = (item.row, item.next_pos);
            let toks = body(jobs, (k, c));
            mask.extend_from_slice(&fwd.mask[r * total..(r + 1) * total]);
            for j in 0..width {
                let real = j < toks.len();
                ids.push(if real { i64::from(toks[j]) } else { pad });
                mask.push(i64::from(real));
                pos.push(next + j as i64);
                if real {
                    want.push((i, j));
                }
            }
        }
        let buffers: Vec<Vec<f32>> = host
            .iter()
            .map(|layer| {
                rows.iter()
                    .flat_map(|&(k, _)| {
                        let r = fwd.items[jobs[k].0].row;
                        layer[r * per_row..(r + 1) * per_row].iter().copied()
                    })
                    .collect()
            })
            .collect();
        let out = dec.forward(n, ids, mask, pos, Past::Host { buffers, len: total }, &want)?;
        shared.count_pass(n, want.len(), 0);
        let mut logits = out.logits.into_iter();
        for &(i, j) in &want {
            let (k, c) = rows[i];
            let l = logits.next().ok_or_else(|| ModelError::Ort("fewer logits than asked".into()))?;
            scores[k][c] += log_prob(&l, jobs[k].1.choices.ids[c][j + 1]);
        }
        start = end;
    }
    Ok(())
}

/// The tokens of a long choice fed in the second pass: all but the last.
fn body(jobs: &[(usize, ChoiceJob)], (k, c): (usize, usize)) -> &[u32] {
    let ids = &jobs[k].1.choices.ids[c];
    &ids[..ids.len() - 1]
}

/// A bounded choice's answer: each choice's score (an upper bound where dropped) and whether
/// it was dropped.
type Settled = (Vec<f32>, Vec<bool>);

/// Scores jobs whose callers want only the decision ([`ChoiceBounds`]), each at its item of
/// `fwd`: their prompts' pass carried no tree; the trees are fed now, best first, on top of
/// each prompt's keys and values, until the bounds have settled every choice. Each pass
/// carries the next few nodes of every prompt still unsettled (one row per prompt, padding
/// where a prompt has fewer or none left), so the prompts of one pass share their expansion
/// passes instead of taking turns.
fn bounded(dec: &mut Decoder, shared: &Shared, fwd: &Prefill, jobs: &[(usize, &ChoiceJob, &ChoiceBounds)]) -> Result<Vec<Settled>, ModelError> {
    let b = jobs.len();
    let total0 = fwd.total;
    let pad = i64::from(shared.pad_token);
    let mut searches: Vec<Search<'_>> = jobs.iter().map(|&(r, job, bounds)| Search::new(&job.choices, bounds, &fwd.items[r].last)).collect();
    // Per row, what each position after the prompt's holds: a node, or padding.
    let mut fed: Vec<Vec<Option<usize>>> = vec![Vec::new(); b];
    let mut past = {
        let host = session::layer_slices(&fwd.present)?;
        let per_row = host.first().map_or(0, |l| l.len() / fwd.rows.max(1));
        let rows: Vec<usize> = jobs.iter().map(|&(r, _, _)| fwd.items[r].row).collect();
        Past::Host {
            buffers: host.iter().map(|l| rows.iter().flat_map(|&row| l[row * per_row..(row + 1) * per_row].iter().copied()).collect()).collect(),
            len: total0,
        }
    };
    loop {
        let nodes: Vec<Vec<usize>> = searches.iter_mut().map(|s| s.frontier(EXPAND_PER_PASS)).collect();
        let s = nodes.iter().map(Vec::len).max().unwrap_or(0);
        if s == 0 {
            break;
        }
        let t = total0 + fed.first().map_or(0, Vec::len) + s;
        let (mut ids, mut positions, mut mask, mut tree, mut want) =
            (Vec::with_capacity(b * s), Vec::with_capacity(b * s), Vec::with_capacity(b * t), Vec::with_capacity(b * s * t), Vec::new());
        for (i, (&(r, job, _), row_nodes)) in jobs.iter().zip(&nodes).enumerate() {
            let item = &fwd.items[r];
            let choices = &job.choices;
            let row_mask = &fwd.mask[item.row * total0..(item.row + 1) * total0];
            mask.extend_from_slice(row_mask);
            mask.extend(fed[i].iter().map(|f| i64::from(f.is_some())));
            for q in 0..s {
                match row_nodes.get(q) {
                    Some(&n) => {
                        ids.push(i64::from(choices.nodes[n].token));
                        positions.push(item.next_pos + choices.nodes[n].depth as i64 - 1);
                        mask.push(1);
                        want.push((i, q));
                    }
                    None => {
                        ids.push(pad);
                        positions.push(item.next_pos);
                        mask.push(0);
                    }
                }
            }
            for q in 0..s {
                match row_nodes.get(q) {
                    Some(&n) => {
                        tree.extend(row_mask.iter().map(|&m| m != 0));
                        tree.extend(fed[i].iter().map(|f| f.is_some_and(|f| choices.sees(n, f))));
                        tree.extend((0..s).map(|o| row_nodes.get(o).is_some_and(|&o| choices.sees(n, o))));
                    }
                    // A padding line is left open: its key is masked out, its output unread.
                    None => tree.extend(std::iter::repeat_n(true, t)),
                }
            }
        }
        let out = dec.forward_tree(b, ids, mask, positions, past, &want, Some(tree), Keep::Cache)?;
        shared.count_pass(b, want.len(), 0);
        let mut logits = out.logits.into_iter();
        for &(i, q) in &want {
            let l = logits.next().ok_or_else(|| ModelError::Ort("fewer logits than asked".into()))?;
            searches[i].feed(nodes[i][q], &l);
        }
        for (row, row_nodes) in fed.iter_mut().zip(&nodes) {
            row.extend((0..s).map(|q| row_nodes.get(q).copied()));
        }
        past = Past::Device(out.present);
    }
    Ok(searches.into_iter().map(Search::finish).collect())
}

/// Tree nodes fed per pass of a bounded choice: enough that the likeliest labels finish in a
/// few passes (their scores are what lets the others be dropped), few enough that a pass
/// stays cheap. On banking77's 77 labels (294 tree nodes) 8 per pass fed about 17 nodes in 3
/// passes per prompt, in a simulation on the default model.
const EXPAND_PER_PASS: usize = 8;
