//! Builds ONNX graphs node by node and writes model files, with large weights in an external
//! data file so the model itself stays small and is written without holding every weight
//! in memory twice.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::proto::Msg;
use crate::model::error::{io, ModelError};

/// ONNX element types loopc writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// `float`.
    F32 = 1,
    /// `uint8` (packed quantized weights).
    U8 = 2,
    /// `int32`.
    I32 = 6,
    /// `int64`.
    I64 = 7,
    /// `bool`.
    Bool = 9,
}

/// A dimension of a graph input or output.
#[derive(Clone, Debug)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named dynamic size.
    Named(&'static str),
}

/// A node attribute.
#[derive(Clone, Debug)]
pub enum Attr {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f32),
    /// A list of integers.
    Ints(Vec<i64>),
}

/// Where weights go as they are added.
enum WeightSink {
    /// Inside the model file (small test models).
    Inline,
    /// Appended to an external data file, referenced by offset.
    External { file: std::io::BufWriter<std::fs::File>, path: PathBuf, file_name: String, offset: u64 },
}

/// The domain of ONNX Runtime's contrib operators (`MatMulNBits`, `GatherBlockQuantized`).
pub const MS_DOMAIN: &str = "com.microsoft";

/// Where an external tensor's data starts is rounded up to this many bytes, so tensors of odd
/// byte lengths (packed 4-bit codes) never leave the float tensors after them misaligned.
const EXTERNAL_ALIGN: u64 = 64;

/// An ONNX graph under construction.
pub struct GraphBuilder {
    nodes: Vec<Msg>,
    initializers: Vec<Msg>,
    inputs: Vec<Msg>,
    outputs: Vec<Msg>,
    counter: usize,
    sink: WeightSink,
    /// Whether a node of [`MS_DOMAIN`] was added (the model then imports that opset too).
    uses_ms: bool,
    /// The ONNX opset the graph is written for.
    opset: i64,
    /// The names of the initializers added so far.
    names: HashSet<String>,
    /// Nodes the prefill graph has in place of the main graph's, by index into `nodes`
    /// (see [`GraphBuilder::op_ms_prefill`]).
    prefill_nodes: Vec<(usize, Msg)>,
}

impl GraphBuilder {
    /// A builder that keeps weights inside the model file.
    pub fn inline() -> GraphBuilder {
        GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            counter: 0,
            sink: WeightSink::Inline,
            uses_ms: false,
            opset: 17,
            names: HashSet::new(),
            prefill_nodes: Vec::new(),
        }
    }

    /// A builder that streams weights into `data_path` (which must sit beside the model file).
    pub fn external(data_path: &Path) -> Result<GraphBuilder, ModelError> {
        let file = std::fs::File::create(data_path).map_err(io("create", data_path))?;
        let file_name = data_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ModelError::Request(format!("bad data file name `{}`", data_path.display())))?
            .to_string();
        Ok(GraphBuilder {
            sink: WeightSink::External { file: std::io::BufWriter::with_capacity(1 << 20, file), path: data_path.to_path_buf(), file_name, offset: 0 },
            ..GraphBuilder::inline()
        })
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    /// Writes the graph for ONNX opset `opset` (17 unless set; opset 23 brings `Attention` and
    /// `RotaryEmbedding`, and takes reduction axes as inputs).
    pub fn set_opset(&mut self, opset: i64) {
        self.opset = opset;
    }

    /// The ONNX opset the graph is written for.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) {
        self.inputs.push(value_info(name, elem, dims));
    }

    /// Declares a graph output.
    pub fn output(&mut self, name: &str, elem: Elem, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem, dims));
    }

    /// Adds a node with one output and returns the output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(op_type);
        self.node(op_type, inputs, &[&out], attrs);
        out
    }

    /// Adds a node whose single output has a chosen name.
    pub fn op_to(&mut self, op_type: &str, inputs: &[&str], out: &str, attrs: &[(&str, Attr)]) -> String {
        self.node(op_type, inputs, &[out], attrs);
        out.to_string()
    }

    /// Adds a node with `n` outputs and returns their names.
    pub fn op_n(&mut self, op_type: &str, inputs: &[&str], n: usize, attrs: &[(&str, Attr)]) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(op_type)).collect();
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.node(op_type, inputs, &refs, attrs);
        outs
    }

    /// Adds a node of ONNX Runtime's contrib domain ([`MS_DOMAIN`]) with one output.
    pub fn op_ms(&mut self, op_type: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(op_type);
        self.uses_ms = true;
        self.node_in(MS_DOMAIN, op_type, inputs, &[&out], attrs);
        out
    }

    /// [`GraphBuilder::op_ms`] for a node the prefill graph (see [`GraphBuilder::finish_pair`])
    /// runs with other attributes: `prefill_attrs` in place of `attrs`, the same inputs and
    /// output.
    pub fn op_ms_prefill(&mut self, op_type: &str, inputs: &[&str], attrs: &[(&str, Attr)], prefill_attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(op_type);
        self.uses_ms = true;
        let name = self.fresh(&format!("n_{op_type}"));
        let main = encode_node(MS_DOMAIN, op_type, &name, inputs, &[&out], attrs);
        let prefill = encode_node(MS_DOMAIN, op_type, &name, inputs, &[&out], prefill_attrs);
        self.prefill_nodes.push((self.nodes.len(), prefill));
        self.nodes.push(main);
        out
    }

    /// Adds a node whose outputs have chosen names.
    pub fn op_outs(&mut self, op_type: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) {
        self.node(op_type, inputs, outputs, attrs);
    }

    /// A fresh value name, for outputs of [`GraphBuilder::op_outs`].
    pub fn fresh_name(&mut self, prefix: &str) -> String {
        self.fresh(prefix)
    }

    fn node(&mut self, op_type: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) {
        self.node_in("", op_type, inputs, outputs, attrs)
    }

    fn node_in(&mut self, domain: &str, op_type: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) {
        let name = self.fresh(&format!("n_{op_type}"));
        self.nodes.push(encode_node(domain, op_type, &name, inputs, outputs, attrs));
    }

    /// A small int64 constant.
    pub fn const_i64(&mut self, values: &[i64]) -> String {
        let name = self.fresh("c");
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(tensor_inline(&name, Elem::I64, &[values.len() as i64], &raw));
        name
    }

    /// A graph input with a default value: an int64 scalar initializer of the same name, which
    /// callers may override by feeding the input (ONNX IR 4+).
    pub fn input_with_default_i64(&mut self, name: &str, default: i64) -> String {
        self.inputs.push(value_info(name, Elem::I64, &[]));
        self.initializers.push(tensor_inline(name, Elem::I64, &[], &default.to_le_bytes()));
        name.to_string()
    }

    /// A bool graph input with `dims` whose default, when a runner does not feed it, is a
    /// tensor of `default_dims` all `true` (broadcasting over any shape).
    pub fn input_with_default_true(&mut self, name: &str, dims: &[Dim], default_dims: &[i64]) -> String {
        self.inputs.push(value_info(name, Elem::Bool, dims));
        let n: i64 = default_dims.iter().product();
        self.initializers.push(tensor_inline(name, Elem::Bool, default_dims, &vec![1u8; n.max(0) as usize]));
        name.to_string()
    }

    /// A float scalar constant (shape `[]`).
    pub fn const_f32(&mut self, value: f32) -> String {
        let name = self.fresh("c");
        self.initializers.push(tensor_inline(&name, Elem::F32, &[], &value.to_le_bytes()));
        name
    }

    /// A float tensor of any size: inline or in the external data file, as the builder was made.
    pub fn weight(&mut self, name: &str, dims: &[i64], data: &[f32]) -> Result<String, ModelError> {
        self.tensor(name, Elem::F32, dims, bytemuck_f32(data))
    }

    /// A tensor of `elem` from its little-endian bytes: inline or in the external data file.
    pub fn tensor(&mut self, name: &str, elem: Elem, dims: &[i64], raw: &[u8]) -> Result<String, ModelError> {
        let t = match &mut self.sink {
            WeightSink::Inline => tensor_inline(name, elem, dims, raw),
            WeightSink::External { file, path, file_name, offset } => {
                let aligned = offset.div_ceil(EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
                file.write_all(&vec![0u8; (aligned - *offset) as usize]).map_err(io("write", path))?;
                file.write_all(raw).map_err(io("write", path))?;
                let mut t = tensor_header(name, elem, dims);
                for (k, v) in [("location", file_name.clone()), ("offset", aligned.to_string()), ("length", raw.len().to_string())] {
                    let mut e = Msg::new();
                    e.string(1, k).string(2, &v);
                    t.msg(13, &e);
                }
                t.int(14, 1);
                *offset = aligned + raw.len() as u64;
                t
            }
        };
        self.initializers.push(t);
        self.names.insert(name.to_string());
        Ok(name.to_string())
    }

    /// Whether an initializer named `name` was added (by [`GraphBuilder::weight`] or
    /// [`GraphBuilder::tensor`]).
    pub fn has_initializer(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Encodes the model (its opset, plus [`MS_DOMAIN`] opset 1 when its operators are used)
    /// and finishes the external data file.
    pub fn finish(self, graph_name: &str) -> Result<Vec<u8>, ModelError> {
        Ok(self.finish_pair(graph_name)?.0)
    }

    /// [`GraphBuilder::finish`], and the prefill graph when a node was added with
    /// [`GraphBuilder::op_ms_prefill`]: the same graph over the same initializers (and external
    /// data file), with those nodes' prefill attributes.
    pub fn finish_pair(mut self, graph_name: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), ModelError> {
        if let WeightSink::External { file, path, .. } = &mut self.sink {
            file.flush().map_err(io("write", path))?;
            file.get_ref().sync_all().map_err(io("write", path))?;
        }
        let main = self.encode(graph_name, &self.nodes);
        let prefill = (!self.prefill_nodes.is_empty()).then(|| {
            let mut nodes = self.nodes.clone();
            for (at, node) in &self.prefill_nodes {
                nodes[*at] = node.clone();
            }
            self.encode(graph_name, &nodes)
        });
        Ok((main, prefill))
    }

    fn encode(&self, graph_name: &str, nodes: &[Msg]) -> Vec<u8> {
        let mut g = Msg::new();
        for n in nodes {
            g.msg(1, n);
        }
        g.string(2, graph_name);
        for t in &self.initializers {
            g.msg(5, t);
        }
        for i in &self.inputs {
            g.msg(11, i);
        }
        for o in &self.outputs {
            g.msg(12, o);
        }
        let mut opset = Msg::new();
        opset.string(1, "").int(2, self.opset);
        let mut m = Msg::new();
        // IR 10 goes with opset 23 (what ONNX Runtime checks); IR 8 is enough for opset 17.
        let ir = if self.opset >= 21 { 10 } else { 8 };
        m.int(1, ir).string(2, "loopc").string(3, env!("CARGO_PKG_VERSION")).msg(7, &g).msg(8, &opset);
        if self.uses_ms {
            let mut ms = Msg::new();
            ms.string(1, MS_DOMAIN).int(2, 1);
            m.msg(8, &ms);
        }
        m.into_bytes()
    }
}

/// One `NodeProto`.
fn encode_node(domain: &str, op_type: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) -> Msg {
    let mut n = Msg::new();
    for i in inputs {
        n.string(1, i);
    }
    for o in outputs {
        n.string(2, o);
    }
    n.string(3, name).string(4, op_type);
    for (key, value) in attrs {
        let mut a = Msg::new();
        a.string(1, key);
        match value {
            Attr::Float(f) => {
                a.float(2, *f).int(20, 1);
            }
            Attr::Int(i) => {
                a.int(3, *i).int(20, 2);
            }
            Attr::Ints(is) => {
                for i in is {
                    a.int(8, *i);
                }
                a.int(20, 7);
            }
        }
        n.msg(5, &a);
    }
    if !domain.is_empty() {
        n.string(7, domain);
    }
    n
}

#[cfg(target_endian = "big")]
compile_error!("ONNX raw data is little-endian; loopc writes it by viewing f32 memory directly");

/// Views floats as their little-endian bytes.
fn bytemuck_f32(data: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding, any byte pattern is a valid u8, the length is exact, and
    // the target is little-endian (checked above).
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

fn tensor_header(name: &str, elem: Elem, dims: &[i64]) -> Msg {
    let mut t = Msg::new();
    for d in dims {
        t.int(1, *d);
    }
    t.int(2, elem as i64).string(8, name);
    t
}

fn tensor_inline(name: &str, elem: Elem, dims: &[i64], raw: &[u8]) -> Msg {
    let mut t = tensor_header(name, elem, dims);
    t.bytes(9, raw);
    t
}

fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> Msg {
    let mut shape = Msg::new();
    for d in dims {
        let mut dm = Msg::new();
        match d {
            Dim::Fixed(v) => dm.int(1, *v),
            Dim::Named(p) => dm.string(2, p),
        };
        shape.msg(1, &dm);
    }
    let mut tensor = Msg::new();
    tensor.int(1, elem as i64).msg(2, &shape);
    let mut ty = Msg::new();
    ty.msg(1, &tensor);
    let mut vi = Msg::new();
    vi.string(1, name).msg(2, &ty);
    vi
}
