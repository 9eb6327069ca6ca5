//! One ONNX Runtime session of a decoder with a KV cache: loading ONNX Runtime once per
//! process, checking the model's inputs and outputs, and running one forward pass.

use std::path::Path;
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{OutputSelector, RunOptions, Session};
use ort::value::{DynValue, Tensor, ValueType};

use super::error::ModelError;

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` (once per process; later calls reuse the first).
pub fn init_runtime(library: &Path) -> Result<&'static ort::environment::Environment, ModelError> {
    let env = ENVIRONMENT.get_or_init(|| {
        let builder = ort::init_from(library).map_err(|e| e.to_string())?;
        builder.with_name("loopc").build().map_err(|e| e.to_string())
    });
    env.as_ref().map_err(|reason| ModelError::Runtime { path: library.to_path_buf(), reason: reason.clone() })
}

/// The dimensions of the KV cache a decoder expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShape {
    /// Transformer layers.
    pub layers: usize,
    /// Key/value heads.
    pub heads: usize,
    /// Size of one head.
    pub head_dim: usize,
}

impl KvShape {
    /// Floats per token per layer, for keys or values.
    pub fn per_token(self) -> usize {
        self.heads * self.head_dim
    }
}

/// A decoder session whose inputs and outputs were checked on load.
pub struct Decoder {
    session: Session,
    /// The KV cache shape, read from the model.
    pub kv: KvShape,
    /// The vocabulary size (the last dimension of `logits`).
    pub vocab: usize,
    has_position_ids: bool,
    has_logits_to_keep: bool,
    has_tree_mask: bool,
    input_names: Vec<String>,
}

/// The past keys and values fed to a forward pass.
pub enum Past {
    /// No past: every row starts here (`past_sequence_length` 0).
    Empty,
    /// Host copies, one `[B, heads, P, head_dim]` buffer per layer for keys then values.
    Host {
        /// `2 * layers` buffers: layer 0 key, layer 0 value, layer 1 key, ...
        buffers: Vec<Vec<f32>>,
        /// P.
        len: usize,
    },
    /// The `present` outputs of the previous pass, fed back without copying.
    Device(Vec<DynValue>),
}

/// Which outputs a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The logits and the `present.*` keys and values, for a pass that something continues
    /// (a generation, a cached prefix).
    Cache,
    /// The logits only. ONNX Runtime then frees each layer's keys and values once the layer
    /// has attended over them, instead of holding every layer's to the end of the pass: a
    /// choice pass scored in one go needs no cache afterwards, and its peak memory drops by
    /// rows × length × the cache's bytes per position.
    LogitsOnly,
}

/// What a forward pass returns.
pub struct Forward {
    /// Logits of the requested positions, `vocab` floats each, in request order.
    pub logits: Vec<Vec<f32>>,
    /// The `present.*` outputs, for the next pass (empty with [`Keep::LogitsOnly`]).
    pub present: Vec<DynValue>,
}

impl Decoder {
    /// Opens `model.onnx` with `threads` intra-op threads and checks its interface.
    pub fn open(env: &ort::environment::Environment, model: &Path, threads: usize, name: &str) -> Result<Decoder, ModelError> {
        let bad = |reason: String| ModelError::BadModel { model: name.to_string(), reason };
        if !model.is_file() {
            return Err(bad(format!("`{}` does not exist", model.display())));
        }
        let ort_err = |e: ort::Error<ort::session::builder::SessionBuilder>| ModelError::Ort(e.to_string());
        let session = Session::builder(env)
            .map_err(|e| ModelError::Ort(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort_err)?
            .with_intra_threads(threads.max(1))
            .map_err(ort_err)?
            // Without the arena, tensors a pass frees go back to the system instead of staying
            // reserved at their high-water mark: measured on the default model, 10 MB less at
            // the peak of a 300-token prefill and the same speed.
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
            .map_err(ort_err)?
            .commit_from_file(model)
            .map_err(|e| bad(format!("ONNX Runtime cannot load `{}`: {e}", model.display())))?;
        let input_names: Vec<String> = session.inputs().iter().map(|i| i.name().to_string()).collect();
        for required in ["input_ids", "attention_mask", "past_key_values.0.key", "past_key_values.0.value"] {
            if !input_names.iter().any(|n| n == required) {
                return Err(bad(format!(
                    "the model has no input `{required}` (its inputs: {}); loopc runs decoder exports with a KV cache, \
                     laid out like Hugging Face Optimum's (input_ids, attention_mask, position_ids, past_key_values.N.key/value)",
                    input_names.join(", ")
                )));
            }
        }
        let layers = input_names.iter().filter(|n| n.starts_with("past_key_values.") && n.ends_with(".key")).count();
        for i in 0..layers {
            for out in [format!("present.{i}.key"), format!("present.{i}.value")] {
                if !session.outputs().iter().any(|o| o.name() == out) {
                    return Err(bad(format!("the model has input `past_key_values.{i}.key` but no output `{out}`")));
                }
            }
        }
        let dims = |n: &str, io: &[ort::value::Outlet]| -> Option<Vec<i64>> {
            io.iter().find(|o| o.name() == n).and_then(|o| match o.dtype() {
                ValueType::Tensor { shape, .. } => Some(shape.iter().copied().collect()),
                _ => None,
            })
        };
        let past = dims("past_key_values.0.key", session.inputs()).unwrap_or_default();
        let (heads, head_dim) = match past.as_slice() {
            [_, h, _, d] if *h > 0 && *d > 0 => (*h as usize, *d as usize),
            other => {
                return Err(bad(format!("`past_key_values.0.key` should be [batch, heads, past, head_dim] with fixed heads and head_dim, found {other:?}")))
            }
        };
        let vocab = match dims("logits", session.outputs()).as_deref() {
            Some([_, _, v]) if *v > 0 => *v as usize,
            Some(other) => return Err(bad(format!("`logits` should be [batch, sequence, vocab], found {other:?}"))),
            None => return Err(bad("the model has no output `logits`".into())),
        };
        let has_position_ids = input_names.iter().any(|n| n == "position_ids");
        // loopc's own exports declare it with a default, which makes it an overridable
        // initializer: ONNX Runtime lists those apart from the plain inputs.
        let overridable = |name: &str| input_names.iter().any(|n| n == name) || session.overridable_initializers().iter().any(|i| i.name() == name);
        let has_tree_mask = overridable("tree_mask");
        let has_logits_to_keep =
            input_names.iter().any(|n| n == "num_logits_to_keep") || session.overridable_initializers().iter().any(|i| i.name() == "num_logits_to_keep");
        Ok(Decoder { session, kv: KvShape { layers, heads, head_dim }, vocab, has_position_ids, has_logits_to_keep, has_tree_mask, input_names })
    }

    /// Runs one pass over `ids` ([B, S]) with `mask` ([B, P + S]) and `positions` ([B, S]),
    /// returning the logits at `want` (pairs of row and position within S). When the model
    /// can, only the positions from the earliest wanted one to the end get logits.
    pub fn forward(
        &mut self,
        batch: usize,
        ids: Vec<i64>,
        mask: Vec<i64>,
        positions: Vec<i64>,
        past: Past,
        want: &[(usize, usize)],
    ) -> Result<Forward, ModelError> {
        self.forward_tree(batch, ids, mask, positions, past, want, None, Keep::Cache)
    }

    /// [`Decoder::forward`] with a tree mask (`[B, 1, S, P + S]`, and-ed with the causal and
    /// padding mask; only for models that take one, see [`Decoder::takes_tree_mask`]), and
    /// with the `present.*` outputs only when `keep` asks for them.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_tree(
        &mut self,
        batch: usize,
        ids: Vec<i64>,
        mask: Vec<i64>,
        positions: Vec<i64>,
        past: Past,
        want: &[(usize, usize)],
        tree: Option<Vec<bool>>,
        keep: Keep,
    ) -> Result<Forward, ModelError> {
        let seq = ids.len() / batch.max(1);
        let total = mask.len() / batch.max(1);
        let past_len = total - seq;
        let kv = self.kv;
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::with_capacity(3 + 2 * kv.layers);
        inputs.push(("input_ids".into(), Tensor::from_array(([batch, seq], ids))?.into()));
        inputs.push(("attention_mask".into(), Tensor::from_array(([batch, total], mask))?.into()));
        if self.has_position_ids {
            inputs.push(("position_ids".into(), Tensor::from_array(([batch, seq], positions))?.into()));
        }
        let first_wanted = want.iter().map(|w| w.1).min().unwrap_or(seq.saturating_sub(1));
        let kept = if self.has_logits_to_keep { seq - first_wanted } else { seq };
        if self.has_logits_to_keep {
            inputs.push(("num_logits_to_keep".into(), Tensor::from_array(((), vec![kept as i64]))?.into()));
        }
        if let Some(tree) = tree {
            if !self.has_tree_mask {
                return Err(ModelError::Request("this model takes no tree mask".into()));
            }
            inputs.push(("tree_mask".into(), Tensor::from_array(([batch, 1, seq, total], tree))?.into()));
        }
        let names: Vec<String> = (0..kv.layers).flat_map(|i| [format!("past_key_values.{i}.key"), format!("past_key_values.{i}.value")]).collect();
        match past {
            Past::Empty => {
                for n in names {
                    inputs.push((n, Tensor::from_array(([batch, kv.heads, 0, kv.head_dim], Vec::<f32>::new()))?.into()));
                }
            }
            Past::Host { buffers, len } => {
                debug_assert_eq!(len, past_len);
                for (n, b) in names.into_iter().zip(buffers) {
                    inputs.push((n, Tensor::from_array(([batch, kv.heads, len, kv.head_dim], b))?.into()));
                }
            }
            Past::Device(values) => {
                for (n, v) in names.into_iter().zip(values) {
                    inputs.push((n, v.into()));
                }
            }
        }
        let only_logits = match keep {
            Keep::Cache => None,
            Keep::LogitsOnly => Some(RunOptions::new()?.with_outputs(OutputSelector::no_default().with("logits"))),
        };
        let mut outputs = match &only_logits {
            None => self.session.run(inputs)?,
            Some(options) => self.session.run_with_options(inputs, options)?,
        };
        let (_, logits) = outputs["logits"].try_extract_tensor::<f32>()?;
        let v = self.vocab;
        let mut picked = Vec::with_capacity(want.len());
        let offset = seq - kept;
        for &(row, pos) in want {
            let at = (row * kept + pos - offset) * v;
            picked.push(logits.get(at..at + v).ok_or_else(|| ModelError::Ort("logits are smaller than declared".into()))?.to_vec());
        }
        let mut present = Vec::with_capacity(2 * kv.layers);
        for i in (0..kv.layers).filter(|_| keep == Keep::Cache) {
            for kind in ["key", "value"] {
                let name = format!("present.{i}.{kind}");
                present.push(outputs.remove(&name).ok_or_else(|| ModelError::Ort(format!("no output `{name}`")))?);
            }
        }
        Ok(Forward { logits: picked, present })
    }

    /// Whether the model takes a `tree_mask` (loopc's own exports do).
    pub fn takes_tree_mask(&self) -> bool {
        self.has_tree_mask
    }

    /// Whether the model takes `num_logits_to_keep`.
    pub fn keeps_logits(&self) -> bool {
        self.has_logits_to_keep
    }

    /// The model's input names.
    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }
}

/// Copies `present` outputs of a batch-of-one pass to host buffers.
pub fn to_host(present: &[DynValue]) -> Result<Vec<Vec<f32>>, ModelError> {
    present.iter().map(|v| v.try_extract_tensor::<f32>().map(|(_, data)| data.to_vec()).map_err(ModelError::from)).collect()
}

/// The data of each of `present`'s tensors, borrowed (no copy).
pub fn layer_slices(present: &[DynValue]) -> Result<Vec<&[f32]>, ModelError> {
    present.iter().map(|v| v.try_extract_tensor::<f32>().map(|(_, data)| data).map_err(ModelError::from)).collect()
}

/// The default thread count: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
