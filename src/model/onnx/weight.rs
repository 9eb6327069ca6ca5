//! A layer's weight however it is stored, and the ONNX nodes that apply it: the decoder
//! builder asks for `x · Wᵀ` (or an embedding lookup) and does not care whether `W` is a
//! float matrix or blocks of 4- or 8-bit codes.
//!
//! Block-quantized weights become ONNX Runtime's contrib operators (`com.microsoft`):
//! `MatMulNBits` for products and `GatherBlockQuantized` for embedding lookups. Their codes
//! count from the operators' default zero point, `w = (code − middle) · scale`; formats with
//! a per-block minimum (`w = q · d + m`) keep that minimum as a float and add it in f32, as
//! `(Σ_block x) · m`, beside the operator: `MatMulNBits` does take float zero points, but then
//! it dequantizes the whole matrix on every call instead of using its packed kernels (about
//! 60 times slower for one row of a 576×1536 matrix, measured).

use super::graph::{Attr, Elem, GraphBuilder};
use crate::model::error::ModelError;

/// A row-major matrix: `rows` output features by `cols` input features (a vector when rows is 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows * cols` values.
    pub data: Vec<f32>,
}

impl Matrix {
    /// The transpose, `cols` by `rows`.
    pub fn transposed(&self) -> Matrix {
        let mut data = vec![0f32; self.data.len()];
        // Blocked so both reads and writes stay in cache for large matrices.
        const B: usize = 32;
        for r0 in (0..self.rows).step_by(B) {
            for c0 in (0..self.cols).step_by(B) {
                for r in r0..(r0 + B).min(self.rows) {
                    for c in c0..(c0 + B).min(self.cols) {
                        data[c * self.rows + r] = self.data[r * self.cols + c];
                    }
                }
            }
        }
        Matrix { rows: self.cols, cols: self.rows, data }
    }

    /// Stacks matrices with the same column count on top of each other.
    pub fn stack(parts: &[Matrix]) -> Matrix {
        let cols = parts.first().map_or(0, |p| p.cols);
        let data: Vec<f32> = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        Matrix { rows: data.len() / cols.max(1), cols, data }
    }

    /// The matrix with row `i` taken from row `from[i]`.
    fn gather_rows(&self, from: &[usize]) -> Matrix {
        let data = from.iter().flat_map(|&r| self.data[r * self.cols..(r + 1) * self.cols].iter().copied()).collect();
        Matrix { rows: from.len(), cols: self.cols, data }
    }
}

/// A matrix stored as blocks along its input features: each block of `block` consecutive
/// values of a row has `bits`-bit codes, a scale and (for some formats) a minimum, and value
/// `j` of a block is `(code_j − middle) · scale (+ min)`, where `middle` is 2^(bits−1) (8 or
/// 128), the operators' default zero point, so no zero-point tensor is needed.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockMatrix {
    /// Rows (output features).
    pub rows: usize,
    /// Columns (input features), a whole number of blocks.
    pub cols: usize,
    /// Bits per code: 4 or 8.
    pub bits: u8,
    /// Values per block: a power of two, at least 16.
    pub block: usize,
    /// The codes, row after row and block after block; 4-bit codes two to a byte, the
    /// earlier value in the low nibble (the layout of `MatMulNBits`' `B`).
    pub codes: Vec<u8>,
    /// One scale per block, `rows * cols / block`, in code order.
    pub scales: Vec<f32>,
    /// One minimum per block, added to every value of it, for formats that have one.
    pub mins: Option<Vec<f32>>,
}

impl BlockMatrix {
    /// Blocks in one row.
    pub fn blocks_per_row(&self) -> usize {
        self.cols / self.block
    }

    /// Bytes of codes in one block.
    pub fn block_bytes(&self) -> usize {
        self.block * self.bits as usize / 8
    }

    /// What codes count from: 8 for 4-bit codes, 128 for 8-bit ones.
    pub fn middle(&self) -> i32 {
        1 << (self.bits - 1)
    }

    /// Checks that the sizes agree with each other; every constructor's result passes.
    pub fn check(&self) -> Result<(), String> {
        let ok_block = self.block >= 16 && self.block.is_power_of_two() && self.cols % self.block == 0;
        let n_blocks = self.rows * self.blocks_per_row();
        let ok = matches!(self.bits, 4 | 8)
            && ok_block
            && self.codes.len() == n_blocks * self.block_bytes()
            && self.scales.len() == n_blocks
            && self.mins.as_ref().is_none_or(|m| m.len() == n_blocks);
        if ok {
            Ok(())
        } else {
            Err(format!("an inconsistent {}x{} block matrix ({}-bit codes in blocks of {})", self.rows, self.cols, self.bits, self.block))
        }
    }

    /// The values as f32, computed as `(code − middle) · scale + min`.
    pub fn dequantize(&self) -> Matrix {
        let zero = self.middle();
        let mut data = Vec::with_capacity(self.rows * self.cols);
        for (b, block) in self.codes.chunks_exact(self.block_bytes()).enumerate() {
            let scale = self.scales[b];
            let min = self.mins.as_ref().map(|m| m[b]);
            let mut push = |code: u8| {
                let v = (i32::from(code) - zero) as f32 * scale;
                data.push(match min {
                    Some(m) => v + m,
                    None => v,
                });
            };
            if self.bits == 4 {
                for &byte in block {
                    push(byte & 0x0F);
                    push(byte >> 4);
                }
            } else {
                block.iter().copied().for_each(&mut push);
            }
        }
        Matrix { rows: self.rows, cols: self.cols, data }
    }

    /// The matrix with row `i` taken from row `from[i]`.
    fn gather_rows(&self, from: &[usize]) -> BlockMatrix {
        let (nb, bytes) = (self.blocks_per_row(), self.blocks_per_row() * self.block_bytes());
        let pick = |v: &[f32]| from.iter().flat_map(|&r| v[r * nb..(r + 1) * nb].iter().copied()).collect::<Vec<f32>>();
        BlockMatrix {
            rows: from.len(),
            codes: from.iter().flat_map(|&r| self.codes[r * bytes..(r + 1) * bytes].iter().copied()).collect(),
            scales: pick(&self.scales),
            mins: self.mins.as_deref().map(pick),
            ..self.clone()
        }
    }

    /// Whether `other` has the same storage (bits, block, minimums), so the two can be
    /// stacked into one matrix.
    fn stacks_with(&self, other: &BlockMatrix) -> bool {
        (self.cols, self.bits, self.block, self.mins.is_some()) == (other.cols, other.bits, other.block, other.mins.is_some())
    }
}

/// A weight as stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Weight {
    /// Floats (F32, F16 or BF16 in the file).
    F32(Matrix),
    /// Block-quantized codes.
    Blocks(BlockMatrix),
}

impl Weight {
    /// Rows (output features).
    pub fn rows(&self) -> usize {
        match self {
            Weight::F32(m) => m.rows,
            Weight::Blocks(b) => b.rows,
        }
    }

    /// Columns (input features).
    pub fn cols(&self) -> usize {
        match self {
            Weight::F32(m) => m.cols,
            Weight::Blocks(b) => b.cols,
        }
    }

    /// The values as f32 (dequantized when stored as blocks).
    pub fn into_f32(self) -> Matrix {
        match self {
            Weight::F32(m) => m,
            Weight::Blocks(b) => b.dequantize(),
        }
    }

    /// The weight with row `i` taken from row `from[i]` (`from` indexes existing rows).
    pub fn gather_rows(&self, from: &[usize]) -> Weight {
        match self {
            Weight::F32(m) => Weight::F32(m.gather_rows(from)),
            Weight::Blocks(b) => Weight::Blocks(b.gather_rows(from)),
        }
    }

    /// `parts` stacked into one weight when they are stored alike (then one product computes
    /// them all), else `None`.
    fn stacked(parts: &[Weight]) -> Option<Weight> {
        match parts {
            [] => None,
            [one] => Some(one.clone()),
            [Weight::F32(first), ..] => {
                let floats: Option<Vec<Matrix>> = parts.iter().map(|p| if let Weight::F32(m) = p { Some(m.clone()) } else { None }).collect();
                floats.filter(|f| f.iter().all(|m| m.cols == first.cols)).map(|f| Weight::F32(Matrix::stack(&f)))
            }
            [Weight::Blocks(first), ..] => {
                let blocks: Option<Vec<&BlockMatrix>> = parts.iter().map(|p| if let Weight::Blocks(b) = p { Some(b) } else { None }).collect();
                let blocks = blocks.filter(|bs| bs.iter().all(|b| first.stacks_with(b)))?;
                let cat = |f: fn(&BlockMatrix) -> &[f32]| blocks.iter().flat_map(|b| f(b).iter().copied()).collect::<Vec<f32>>();
                Some(Weight::Blocks(BlockMatrix {
                    rows: blocks.iter().map(|b| b.rows).sum(),
                    codes: blocks.iter().flat_map(|b| b.codes.iter().copied()).collect(),
                    scales: cat(|b| &b.scales),
                    mins: first.mins.as_ref().map(|_| cat(|b| b.mins.as_deref().unwrap_or(&[]))),
                    ..first.clone()
                }))
            }
        }
    }
}

/// How block-quantized products compute: the `accuracy_level` of `MatMulNBits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compute {
    /// Activations stay f32 (`accuracy_level` 0): the product of the dequantized weights.
    F32,
    /// Activations are quantized to int8 per block (`accuracy_level` 4): ONNX Runtime's
    /// fastest CPU kernels.
    Int8,
}

impl Compute {
    fn accuracy_level(self) -> i64 {
        match self {
            Compute::F32 => 0,
            Compute::Int8 => 4,
        }
    }
}

/// Emits `x · Wᵀ` for each of `parts` (all with the same columns) and returns one output
/// per part. Parts stored alike are stacked into one product and split after it; parts stored
/// differently (a file may mix 4-bit and 6-bit matrices) get one product each. `name` prefixes
/// the initializers.
pub fn linear(g: &mut GraphBuilder, x: &str, parts: Vec<Weight>, name: &str, compute: Compute) -> Result<Vec<String>, ModelError> {
    if let Some(w) = Weight::stacked(&parts) {
        let y = product(g, x, &w, name, compute)?;
        if parts.len() == 1 {
            return Ok(vec![y]);
        }
        let sizes = g.const_i64(&parts.iter().map(|p| p.rows() as i64).collect::<Vec<_>>());
        return Ok(g.op_n("Split", &[&y, &sizes], parts.len(), &[("axis", Attr::Int(-1))]));
    }
    parts.iter().enumerate().map(|(i, w)| product(g, x, w, &format!("{name}.{i}"), compute)).collect()
}

/// `x · Wᵀ` for one weight.
fn product(g: &mut GraphBuilder, x: &str, w: &Weight, name: &str, compute: Compute) -> Result<String, ModelError> {
    match w {
        Weight::F32(m) => {
            let t = m.transposed();
            let w = g.weight(&format!("{name}.weight_T"), &[t.rows as i64, t.cols as i64], &t.data)?;
            Ok(g.op("MatMul", &[x, &w], &[]))
        }
        Weight::Blocks(b) => {
            b.check().map_err(|e| ModelError::Request(format!("`{name}`: {e}")))?;
            let (n, nb) = (b.rows as i64, b.blocks_per_row() as i64);
            let codes = codes_tensor(g, b, name)?;
            let scales = g.weight(&format!("{name}.scales"), &[n * nb], &b.scales)?;
            let refs = [x, codes.as_str(), scales.as_str()];
            let attrs = |compute: Compute| {
                [
                    ("K", Attr::Int(b.cols as i64)),
                    ("N", Attr::Int(n)),
                    ("bits", Attr::Int(i64::from(b.bits))),
                    ("block_size", Attr::Int(b.block as i64)),
                    ("accuracy_level", Attr::Int(compute.accuracy_level())),
                ]
            };
            // Int8 activations pay off for few rows and lose on many: ONNX Runtime 1.32's
            // int8 kernels took 1.3–1.9× as long as its f32-compute ones for 40–300 rows of
            // the default model's matrices (and half as long for one row), so the prefill
            // graph computes 4-bit products in f32 (its f32-compute kernels take 4-bit codes
            // only). See `session::PREFILL_ROWS`.
            let y = if compute == Compute::Int8 && b.bits == 4 {
                g.op_ms_prefill("MatMulNBits", &refs, &attrs(compute), &attrs(Compute::F32))
            } else {
                g.op_ms("MatMulNBits", &refs, &attrs(compute))
            };
            match &b.mins {
                None => Ok(y),
                Some(mins) => {
                    let sums = block_sums(g, x, b.cols, b.block)?;
                    let mins_t = Matrix { rows: b.rows, cols: b.blocks_per_row(), data: mins.clone() }.transposed();
                    let mins_t = g.weight(&format!("{name}.mins_T"), &[nb, n], &mins_t.data)?;
                    let shift = g.op("MatMul", &[&sums, &mins_t], &[]);
                    Ok(g.op("Add", &[&y, &shift], &[]))
                }
            }
        }
    }
}

/// The codes of `b` as `[rows, blocks, bytes]`, the layout both quantized operators read,
/// written under `{name}.qweight`.
fn codes_tensor(g: &mut GraphBuilder, b: &BlockMatrix, name: &str) -> Result<String, ModelError> {
    g.tensor(&format!("{name}.qweight"), Elem::U8, &[b.rows as i64, b.blocks_per_row() as i64, b.block_bytes() as i64], &b.codes)
}

/// The sums of `x`'s consecutive blocks of `block` features (`[.., cols]` → `[.., cols/block]`),
/// as a product with a 0/1 matrix: one node, whatever `x`'s rank.
fn block_sums(g: &mut GraphBuilder, x: &str, cols: usize, block: usize) -> Result<String, ModelError> {
    let name = format!("block_sum.{cols}x{block}");
    if !g.has_initializer(&name) {
        let nb = cols / block;
        let data: Vec<f32> = (0..cols * nb).map(|i| if i / nb / block == i % nb { 1.0 } else { 0.0 }).collect();
        g.weight(&name, &[cols as i64, nb as i64], &data)?;
    }
    Ok(g.op("MatMul", &[x, &name], &[]))
}

/// An embedding table and how its rows are looked up, kept so a tied LM head can reuse it.
pub enum Embedding {
    /// A float table `[vocab, dim]` (the head reuses the same initializer).
    F32 {
        /// The initializer's name.
        table: String,
    },
    /// A block-quantized table (the head is a `MatMulNBits` over the same codes).
    Blocks(BlockMatrix),
}

impl Embedding {
    /// Writes `w`'s table under `name` (floats now; blocks when first used).
    pub fn new(g: &mut GraphBuilder, w: Weight, name: &str) -> Result<Embedding, ModelError> {
        Ok(match w {
            Weight::F32(m) => Embedding::F32 { table: g.weight(name, &[m.rows as i64, m.cols as i64], &m.data)? },
            Weight::Blocks(b) => {
                b.check().map_err(|e| ModelError::Request(format!("`{name}`: {e}")))?;
                Embedding::Blocks(b)
            }
        })
    }

    /// The rows of `ids` (`[B, S]` int64) as `[B, S, dim]` floats. `name` prefixes the
    /// initializers of a block-quantized table.
    pub fn lookup(&self, g: &mut GraphBuilder, ids: &str, name: &str) -> Result<String, ModelError> {
        let b = match self {
            Embedding::F32 { table } => return Ok(g.op("Gather", &[table, ids], &[("axis", Attr::Int(0))])),
            Embedding::Blocks(b) => b,
        };
        let (v, nb) = (b.rows as i64, b.blocks_per_row() as i64);
        // The table as `[vocab, blocks, bytes]` with one scale per `[vocab, blocks, 1]`: the
        // lookup then yields `[B, S, blocks, block]`, to which each block's minimum is added
        // before the last two axes are merged.
        let codes = codes_tensor(g, b, name)?;
        let scales = g.weight(&format!("{name}.gather_scales"), &[v, nb, 1], &b.scales)?;
        let refs = [codes.as_str(), ids, scales.as_str()];
        let attrs =
            [("bits", Attr::Int(i64::from(b.bits))), ("block_size", Attr::Int(b.block as i64)), ("gather_axis", Attr::Int(0)), ("quantize_axis", Attr::Int(2))];
        let mut rows = g.op_ms("GatherBlockQuantized", &refs, &attrs);
        if let Some(mins) = &b.mins {
            let mins = g.weight(&format!("{name}.mins"), &[v, nb], mins)?;
            let picked = g.op("Gather", &[&mins, ids], &[("axis", Attr::Int(0))]);
            let last = g.const_i64(&[-1]);
            let picked = g.op("Unsqueeze", &[&picked, &last], &[]);
            rows = g.op("Add", &[&rows, &picked], &[]);
        }
        let shape = g.const_i64(&[0, 0, b.cols as i64]);
        Ok(g.op("Reshape", &[&rows, &shape], &[]))
    }

    /// The tied LM head: `x · tableᵀ` for `x` of `[M, dim]`, giving `[M, vocab]`.
    ///
    /// A block-quantized head gets its own copy of the codes in the file (`{name}.head.*`):
    /// ONNX Runtime repacks the head's codes on load and then lets go of them, while the
    /// lookup reads only the rows it needs, so with one shared table every page of it would
    /// stay resident (28 MB for the default model) and with two neither does.
    pub fn head(&self, g: &mut GraphBuilder, x: &str, name: &str, compute: Compute) -> Result<String, ModelError> {
        match self {
            Embedding::F32 { table } => Ok(g.op("Gemm", &[x, table], &[("transB", Attr::Int(1))])),
            Embedding::Blocks(b) => product(g, x, &Weight::Blocks(b.clone()), &format!("{name}.head"), compute),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(bits: u8, mins: bool) -> BlockMatrix {
        let (rows, cols, block) = (3, 32, 16);
        let n_blocks = rows * cols / block;
        let codes = (0..rows * cols * bits as usize / 8).map(|i| (i * 37 % 256) as u8).collect();
        let scales = (0..n_blocks).map(|i| 0.5 + i as f32).collect();
        let mins = mins.then(|| (0..n_blocks).map(|i| -(i as f32)).collect());
        BlockMatrix { rows, cols, bits, block, codes, scales, mins }
    }

    #[test]
    fn four_bit_codes_are_read_low_nibble_first_from_the_middle() {
        let b = blocks(4, false);
        let m = b.dequantize();
        // Byte 1 is 37 = 0x25: value 2 is (5 − 8) · 0.5, value 3 is (2 − 8) · 0.5.
        assert_eq!((m.data[2], m.data[3]), (-1.5, -3.0));
        let b = blocks(4, true);
        let m = b.dequantize();
        // Block 1 (values 16..32 of row 0) has scale 1.5 and minimum −1; byte 8 is 296 % 256 = 0x28.
        assert_eq!((m.data[16], m.data[17]), ((8.0 - 8.0) * 1.5 - 1.0, (2.0 - 8.0) * 1.5 - 1.0));
    }

    #[test]
    fn eight_bit_codes_count_from_128_by_default() {
        let m = blocks(8, false).dequantize();
        assert_eq!(m.data[4], (148 - 128) as f32 * 0.5);
    }

    #[test]
    fn rows_gathered_and_stacked_keep_their_blocks() {
        let b = blocks(4, true);
        let m = b.dequantize();
        let swapped = Weight::Blocks(b.clone()).gather_rows(&[2, 0]).into_f32();
        assert_eq!(swapped.data[..32], m.data[64..96]);
        assert_eq!(swapped.data[32..], m.data[..32]);
        let stacked = Weight::stacked(&[Weight::Blocks(b.clone()), Weight::Blocks(b.clone())]).unwrap().into_f32();
        assert_eq!((stacked.rows, &stacked.data[96..]), (6, &m.data[..]));
        assert!(Weight::stacked(&[Weight::Blocks(b.clone()), Weight::Blocks(blocks(8, false))]).is_none(), "4- and 8-bit blocks are not stacked");
        assert!(Weight::stacked(&[Weight::Blocks(b), Weight::F32(m)]).is_none());
    }

    #[test]
    fn inconsistent_sizes_are_refused() {
        let mut b = blocks(4, false);
        assert!(b.check().is_ok());
        b.scales.pop();
        assert!(b.check().is_err());
        let mut b = blocks(4, false);
        b.block = 24;
        assert!(b.check().is_err());
    }

    #[test]
    fn transposing_twice_gives_the_original() {
        let m = Matrix { rows: 3, cols: 70, data: (0..210).map(|x| x as f32).collect() };
        let t = m.transposed();
        assert_eq!((t.rows, t.cols, t.data[1]), (70, 3, 70.0));
        assert_eq!(t.transposed().data, m.data);
    }
}
