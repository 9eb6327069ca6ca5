//! Reads GGUF files (llama.cpp's model format): metadata, tensor descriptions, and tensor
//! data dequantized to f32.
//!
//! A GGUF file is untrusted input. Every count, length and offset read from it is checked,
//! with checked arithmetic, against what the file can actually hold before it is used: a
//! string or array longer than the rest of the file, a tensor whose dimensions multiply past
//! 64 bits, or whose data would end past the file, is an error naming the key or tensor and the
//! byte offset where it was read. Nothing is allocated in proportion to a number the file
//! states, only to bytes it has.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{io, ModelError};
use super::onnx::weight::BlockMatrix;
use super::quant::{self, GgmlType};

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// Any unsigned integer type.
    Uint(u64),
    /// Any signed integer type.
    Int(i64),
    /// `f32` or `f64`.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
    /// An array.
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::Uint(u) => Some(u),
            MetaValue::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::Float(f) => Some(f),
            MetaValue::Uint(u) => Some(u as f64),
            MetaValue::Int(i) => Some(i as f64),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A tensor's description in the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions innermost first (ggml order): a matrix is `[in_features, out_features]`.
    pub dims: Vec<u64>,
    /// The storage type.
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The number of elements (`u64::MAX` when the dimensions multiply past 64 bits, which
    /// [`Gguf::parse`] refuses).
    pub fn len(&self) -> u64 {
        self.dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).unwrap_or(u64::MAX)
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An opened GGUF file, held in memory.
pub struct Gguf {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Metadata by key.
    pub metadata: HashMap<String, MetaValue>,
    /// Tensors in file order.
    pub tensors: Vec<TensorInfo>,
    /// The first tensor of each name.
    by_name: HashMap<String, usize>,
    data_start: usize,
}

/// The bytes a GGUF tensor description takes at least: a name length, a dimension count, a
/// type and an offset.
const MIN_TENSOR_INFO: u64 = 8 + 4 + 4 + 8;
/// The bytes a metadata entry takes at least: a key length, a type and a one-byte value.
const MIN_META_ENTRY: u64 = 8 + 4 + 1;

impl Gguf {
    /// Reads and parses the file at `path`, which must be a regular file (reading a device
    /// such as `/dev/zero` would never end).
    pub fn open(path: &Path) -> Result<Gguf, ModelError> {
        Gguf::parse(path, read_regular(path)?)
    }

    /// Parses GGUF `bytes` read from `path`.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Gguf, ModelError> {
        let err = |reason: String| ModelError::Gguf { path: path.to_path_buf(), reason };
        let mut r = Reader { bytes: &bytes, pos: 0 };
        // Each failure says at which byte the part being read starts, so a crafted or damaged
        // file can be inspected.
        let at = |pos: usize, what: &str, e: String| err(format!("{what} (at byte {pos}): {e}"));
        if r.take(4).map_err(|e| at(0, "the magic bytes", e))? != b"GGUF" {
            return Err(err("it does not start with the GGUF magic bytes".into()));
        }
        let version = r.u32().map_err(|e| at(4, "the version", e))?;
        if !(2..=3).contains(&version) {
            return Err(err(format!("GGUF version {version} is not supported (2 and 3 are)")));
        }
        let n_tensors = r.u64().map_err(|e| at(8, "the tensor count", e))?;
        let n_meta = r.u64().map_err(|e| at(16, "the metadata count", e))?;
        let room = r.remaining();
        if n_meta > room / MIN_META_ENTRY || n_tensors > room / MIN_TENSOR_INFO {
            return Err(err(format!("the header claims {n_meta} metadata entries and {n_tensors} tensors, more than {room} bytes can hold")));
        }
        let mut metadata = HashMap::new();
        for i in 0..n_meta {
            let start = r.pos;
            let key = r.string().map_err(|e| at(start, &format!("the key of metadata entry {i}"), e))?;
            let ty = r.u32().map_err(|e| at(start, &format!("metadata `{key}`"), e))?;
            let value = r.value(ty, 0).map_err(|e| at(start, &format!("metadata `{key}`"), e))?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::new();
        for i in 0..n_tensors {
            let start = r.pos;
            let name = r.string().map_err(|e| at(start, &format!("the name of tensor {i}"), e))?;
            let mut info = || -> Result<TensorInfo, String> {
                let n_dims = r.u32()?;
                if n_dims > 4 {
                    return Err(format!("{n_dims} dimensions, more than 4"));
                }
                let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
                if dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).is_none() {
                    return Err(format!("dimensions {dims:?}, whose product does not fit in 64 bits"));
                }
                let raw_ty = r.u32()?;
                let ty = GgmlType::from_id(raw_ty).ok_or_else(|| format!("unknown ggml type {raw_ty}"))?;
                Ok(TensorInfo { name: name.clone(), dims, ty, offset: r.u64()? })
            };
            let info = info().map_err(|e| at(start, &format!("tensor `{name}`"), e))?;
            tensors.push(info);
        }
        let alignment = metadata.get("general.alignment").and_then(MetaValue::as_u64).unwrap_or(32);
        if alignment == 0 || alignment > bytes.len() as u64 {
            return Err(err(format!("`general.alignment` is {alignment}, not a size within the file")));
        }
        // No overflow: `alignment` and `pos` are at most the file's length.
        let data_start = r.pos.div_ceil(alignment as usize) * alignment as usize;
        let mut by_name = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            by_name.entry(t.name.clone()).or_insert(i);
        }
        let gguf = Gguf { path: path.to_path_buf(), bytes, metadata, tensors, by_name, data_start };
        for t in &gguf.tensors {
            gguf.tensor_bytes(t)?;
        }
        Ok(gguf)
    }

    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// A required unsigned integer metadata value.
    pub fn meta_u64(&self, key: &str) -> Result<u64, ModelError> {
        self.meta(key).and_then(MetaValue::as_u64).ok_or_else(|| self.missing(key))
    }

    /// A required string metadata value.
    pub fn meta_str(&self, key: &str) -> Result<&str, ModelError> {
        self.meta(key).and_then(MetaValue::as_str).ok_or_else(|| self.missing(key))
    }

    /// A required array of strings.
    pub fn meta_strings(&self, key: &str) -> Result<Vec<&str>, ModelError> {
        match self.meta(key) {
            Some(MetaValue::Array(items)) => items.iter().map(|v| v.as_str().ok_or_else(|| self.missing(key))).collect(),
            _ => Err(self.missing(key)),
        }
    }

    fn missing(&self, key: &str) -> ModelError {
        ModelError::Gguf { path: self.path.clone(), reason: format!("metadata `{key}` is missing or has the wrong type") }
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    fn tensor_bytes(&self, t: &TensorInfo) -> Result<&[u8], ModelError> {
        let bad = |reason: String| ModelError::Gguf { path: self.path.clone(), reason };
        let size =
            t.ty.byte_size(t.len()).ok_or_else(|| bad(format!("tensor `{}` has {} elements, not a whole number of {:?} blocks", t.name, t.len(), t.ty)))?;
        let range = (self.data_start as u64)
            .checked_add(t.offset)
            .and_then(|start| Some(start..start.checked_add(size)?))
            .filter(|r| r.end <= self.bytes.len() as u64)
            .ok_or_else(|| {
                bad(format!(
                    "tensor `{}` ({size} bytes at offset {} of the data section) runs past the end of the {}-byte file (truncated download?)",
                    t.name,
                    t.offset,
                    self.bytes.len()
                ))
            })?;
        // Both ends are within the file, so they fit in usize.
        Ok(&self.bytes[range.start as usize..range.end as usize])
    }

    /// A quantized tensor's blocks as ONNX Runtime's quantized operators read them, rows
    /// along its outer dimensions (`None` for float tensors).
    pub fn blocks(&self, t: &TensorInfo) -> Result<Option<BlockMatrix>, ModelError> {
        let bytes = self.tensor_bytes(t)?;
        // Both sizes fit in usize: the bytes holding the elements are in memory.
        let cols = usize::try_from(t.dims.first().copied().unwrap_or(1)).unwrap_or(usize::MAX);
        let rows = usize::try_from(t.len()).unwrap_or(usize::MAX) / cols.max(1);
        quant::to_blocks(t.ty, bytes, rows, cols)
            .map_err(|reason| ModelError::Gguf { path: self.path.clone(), reason: format!("tensor `{}`: {reason}", t.name) })
    }

    /// The tensor's values as f32, in ggml order (innermost dimension fastest).
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>, ModelError> {
        let bytes = self.tensor_bytes(t)?;
        // `len` fits in usize: the bytes holding the elements are in memory.
        quant::dequantize(t.ty, bytes, usize::try_from(t.len()).unwrap_or(usize::MAX))
            .map_err(|reason| ModelError::Gguf { path: self.path.clone(), reason: format!("tensor `{}`: {reason}", t.name) })
    }
}

/// Reads `path` whole, refusing anything but a regular file.
pub(crate) fn read_regular(path: &Path) -> Result<Vec<u8>, ModelError> {
    let meta = std::fs::metadata(path).map_err(io("read", path))?;
    if !meta.is_file() {
        return Err(ModelError::Gguf { path: path.to_path_buf(), reason: "it is not a regular file".into() });
    }
    std::fs::read(path).map_err(io("read", path))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or("the file ends early (truncated?)")?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.u64()?;
        if len > self.remaining() {
            return Err(format!("a string of {len} bytes is longer than the rest of the file ({} bytes)", self.remaining()));
        }
        // Within the file, so within usize.
        let b = self.take(len as usize)?;
        String::from_utf8(b.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<MetaValue, String> {
        Ok(match ty {
            0 => MetaValue::Uint(self.array::<1>()?[0] as u64),
            1 => MetaValue::Int(self.array::<1>()?[0] as i8 as i64),
            2 => MetaValue::Uint(u16::from_le_bytes(self.array()?) as u64),
            3 => MetaValue::Int(i16::from_le_bytes(self.array()?) as i64),
            4 => MetaValue::Uint(self.u32()? as u64),
            5 => MetaValue::Int(i32::from_le_bytes(self.array()?) as i64),
            6 => MetaValue::Float(f32::from_le_bytes(self.array()?) as f64),
            7 => MetaValue::Bool(self.array::<1>()?[0] != 0),
            8 => MetaValue::Str(self.string()?),
            9 => {
                if depth > 2 {
                    return Err("arrays nest too deeply".into());
                }
                let item_ty = self.u32()?;
                let len = self.u64()?;
                let item_size = min_size(item_ty).ok_or_else(|| format!("unknown metadata value type {item_ty}"))?;
                // An array cannot hold more items than the rest of the file has room for, so
                // the vector below is sized by bytes that exist, not by the stated length.
                if len > self.remaining() / item_size {
                    return Err(format!("an array of {len} items is longer than the rest of the file ({} bytes)", self.remaining()));
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(item_ty, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::Uint(self.u64()?),
            11 => MetaValue::Int(i64::from_le_bytes(self.array()?)),
            12 => MetaValue::Float(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }
}

/// The fewest bytes a metadata value of type `ty` takes, if the type is known.
fn min_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 4 + 8,
        _ => return None,
    })
}

/// What a GGUF's header says (metadata and tensor descriptions), read without its tensor
/// data: for describing multi-gigabyte files in listings and checking them before an import.
#[derive(Debug)]
pub struct GgufHeader {
    /// Metadata by key.
    pub metadata: HashMap<String, MetaValue>,
    /// Tensors in file order (their data is not checked).
    pub tensors: Vec<TensorInfo>,
    /// The file's size in bytes.
    pub file_size: u64,
}

/// The most header bytes [`GgufHeader::read`] reads (real headers are a few megabytes, most
/// of it the vocabulary).
const MAX_HEADER_BYTES: u64 = 256 << 20;

impl GgufHeader {
    /// Reads the header of the GGUF at `path`, reading more of the file only while the header
    /// goes on.
    pub fn read(path: &Path) -> Result<GgufHeader, ModelError> {
        use std::io::Read;
        let meta = std::fs::metadata(path).map_err(io("read", path))?;
        if !meta.is_file() {
            return Err(ModelError::Gguf { path: path.to_path_buf(), reason: "it is not a regular file".into() });
        }
        let file_size = meta.len();
        let mut want = file_size.min(1 << 20);
        loop {
            let mut bytes = Vec::new();
            let file = std::fs::File::open(path).map_err(io("read", path))?;
            file.take(want).read_to_end(&mut bytes).map_err(io("read", path))?;
            match GgufHeader::parse(&bytes) {
                Ok((metadata, tensors)) => return Ok(GgufHeader { metadata, tensors, file_size }),
                Err(_) if want < file_size.min(MAX_HEADER_BYTES) => want = (want * 4).min(file_size).min(MAX_HEADER_BYTES),
                Err(reason) => return Err(ModelError::Gguf { path: path.to_path_buf(), reason }),
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn parse(bytes: &[u8]) -> Result<(HashMap<String, MetaValue>, Vec<TensorInfo>), String> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != b"GGUF" {
            return Err("it does not start with the GGUF magic bytes".into());
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format!("GGUF version {version} is not supported (2 and 3 are)"));
        }
        let n_tensors = r.u64()?;
        let n_meta = r.u64()?;
        let mut metadata = HashMap::new();
        for _ in 0..n_meta {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0).map_err(|e| format!("metadata `{key}`: {e}"))?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims > 4 {
                return Err(format!("tensor `{name}` has {n_dims} dimensions, more than 4"));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            let raw_ty = r.u32()?;
            let ty = GgmlType::from_id(raw_ty).ok_or_else(|| format!("tensor `{name}` has the ggml type {raw_ty}, which loopc cannot read"))?;
            tensors.push(TensorInfo { name, dims, ty, offset: r.u64()? });
        }
        Ok((metadata, tensors))
    }

    /// The metadata value of `key`.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// How the weights are quantized: see [`quantization_name`].
    pub fn quantization(&self) -> String {
        quantization_name(&self.metadata, &self.tensors)
    }
}

/// How a GGUF's weights are quantized, as llama.cpp names its file types (`Q4_K_M`, `Q8_0`,
/// ...): from `general.file_type`, else the type most of the matrices have.
pub fn quantization_name(metadata: &HashMap<String, MetaValue>, tensors: &[TensorInfo]) -> String {
    const FILE_TYPES: &[(u64, &str)] = &[
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (7, "Q8_0"),
        (8, "Q5_0"),
        (9, "Q5_1"),
        (10, "Q2_K"),
        (11, "Q3_K_S"),
        (12, "Q3_K_M"),
        (13, "Q3_K_L"),
        (14, "Q4_K_S"),
        (15, "Q4_K_M"),
        (16, "Q5_K_S"),
        (17, "Q5_K_M"),
        (18, "Q6_K"),
        (19, "IQ2_XXS"),
        (20, "IQ2_XS"),
        (21, "Q2_K_S"),
        (22, "IQ3_XS"),
        (23, "IQ3_XXS"),
        (24, "IQ1_S"),
        (25, "IQ4_NL"),
        (26, "IQ3_S"),
        (27, "IQ3_M"),
        (28, "IQ2_S"),
        (29, "IQ2_M"),
        (30, "IQ4_XS"),
        (31, "IQ1_M"),
        (32, "BF16"),
        (36, "TQ1_0"),
        (37, "TQ2_0"),
        (38, "MXFP4_MOE"),
    ];
    if let Some(ft) = metadata.get("general.file_type").and_then(MetaValue::as_u64) {
        if let Some((_, name)) = FILE_TYPES.iter().find(|(id, _)| *id == ft) {
            return (*name).to_string();
        }
    }
    let mut counts: Vec<(GgmlType, usize)> = Vec::new();
    for t in tensors.iter().filter(|t| t.dims.len() >= 2) {
        match counts.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.ty, 1)),
        }
    }
    counts.iter().max_by_key(|(_, n)| *n).map_or_else(|| "unknown".to_string(), |(ty, _)| format!("{ty:?}").to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF header with `n_tensors` tensors and the metadata `entries` (already encoded).
    fn header(n_tensors: u64, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&n_tensors.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for e in entries {
            out.extend_from_slice(e);
        }
        out
    }

    fn string(s: &str) -> Vec<u8> {
        let mut out = (s.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    }

    fn tensor(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
        let mut out = string(name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out
    }

    fn parse_err(bytes: Vec<u8>) -> String {
        match Gguf::parse(Path::new("x.gguf"), bytes) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn stated_lengths_beyond_the_file_are_errors_not_allocations() {
        // A string of 2^62 bytes, an array of 2^60 u64s, a header of 2^40 tensors.
        let mut huge_string = string("key");
        huge_string.extend_from_slice(&8u32.to_le_bytes());
        huge_string.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(parse_err(header(0, &[huge_string])).contains("a string of 4611686018427387904 bytes is longer than the rest of the file"));
        let mut huge_array = string("key");
        huge_array.extend_from_slice(&9u32.to_le_bytes());
        huge_array.extend_from_slice(&10u32.to_le_bytes());
        huge_array.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let err = parse_err(header(0, &[huge_array]));
        assert!(err.contains("metadata `key` (at byte 24): an array of 1152921504606846976 items is longer than the rest of the file"), "{err}");
        assert!(parse_err(header(1 << 40, &[])).contains("the header claims 0 metadata entries and 1099511627776 tensors"));
    }

    #[test]
    fn tensors_whose_size_overflows_or_runs_past_the_end_are_errors() {
        let mut file = header(1, &[]);
        file.extend(tensor("w", &[1 << 32, 1 << 32, 2], 0, 0));
        let err = parse_err(file);
        assert!(err.contains("tensor `w` (at byte 24): dimensions [4294967296, 4294967296, 2], whose product does not fit in 64 bits"), "{err}");
        let mut file = header(1, &[]);
        file.extend(tensor("w", &[4], 0, u64::MAX - 3));
        assert!(parse_err(file).contains("tensor `w` (16 bytes at offset 18446744073709551612 of the data section) runs past the end"));
        let mut file = header(1, &[]);
        file.extend(tensor("w", &[1 << 40], 0, 0));
        assert!(parse_err(file).contains("runs past the end of the"));
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        crate::model::testing::write_tiny_gguf(&path, 1).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(Gguf::parse(&path, bytes.clone()).is_ok());
        // The last 32 bytes may be alignment padding after the last tensor, which nothing reads.
        for cut in (0..bytes.len() - 32).step_by(97) {
            assert!(Gguf::parse(&path, bytes[..cut].to_vec()).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn devices_are_not_read() {
        let err = Gguf::open(Path::new("/dev/zero")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
