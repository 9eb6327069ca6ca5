//! Reads GGUF files (llama.cpp's model format): metadata, tensor descriptions, and tensor
//! data dequantized to f32.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{io, ModelError};
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
    /// The number of elements.
    pub fn len(&self) -> u64 {
        self.dims.iter().product()
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
    data_start: usize,
}

impl Gguf {
    /// Reads and parses the file at `path`.
    pub fn open(path: &Path) -> Result<Gguf, ModelError> {
        let bytes = std::fs::read(path).map_err(io("read", path))?;
        Gguf::parse(path, bytes)
    }

    /// Parses GGUF `bytes` read from `path`.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Gguf, ModelError> {
        let err = |reason: String| ModelError::Gguf { path: path.to_path_buf(), reason };
        let mut r = Reader { bytes: &bytes, pos: 0 };
        if r.take(4).map_err(&err)? != b"GGUF" {
            return Err(err("it does not start with the GGUF magic bytes".into()));
        }
        let version = r.u32().map_err(&err)?;
        if !(2..=3).contains(&version) {
            return Err(err(format!("GGUF version {version} is not supported (2 and 3 are)")));
        }
        let n_tensors = r.u64().map_err(&err)?;
        let n_meta = r.u64().map_err(&err)?;
        let mut metadata = HashMap::new();
        for _ in 0..n_meta {
            let key = r.string().map_err(&err)?;
            let ty = r.u32().map_err(&err)?;
            let value = r.value(ty, 0).map_err(&err)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string().map_err(&err)?;
            let n_dims = r.u32().map_err(&err)?;
            if n_dims > 4 {
                return Err(err(format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>().map_err(&err)?;
            let raw_ty = r.u32().map_err(&err)?;
            let ty = GgmlType::from_id(raw_ty).ok_or_else(|| err(format!("tensor `{name}` has unknown ggml type {raw_ty}")))?;
            let offset = r.u64().map_err(&err)?;
            tensors.push(TensorInfo { name, dims, ty, offset });
        }
        let alignment = metadata.get("general.alignment").and_then(MetaValue::as_u64).unwrap_or(32).max(1) as usize;
        let data_start = r.pos.div_ceil(alignment) * alignment;
        let gguf = Gguf { path: path.to_path_buf(), bytes, metadata, tensors, data_start };
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
        self.tensors.iter().find(|t| t.name == name)
    }

    fn tensor_bytes(&self, t: &TensorInfo) -> Result<&[u8], ModelError> {
        let size = t.ty.byte_size(t.len()).ok_or_else(|| ModelError::Gguf {
            path: self.path.clone(),
            reason: format!("tensor `{}` has {} elements, not a whole number of {:?} blocks", t.name, t.len(), t.ty),
        })?;
        let start = self.data_start as u64 + t.offset;
        let end = start + size;
        if end > self.bytes.len() as u64 {
            return Err(ModelError::Gguf {
                path: self.path.clone(),
                reason: format!("tensor `{}` runs past the end of the file (truncated download?)", t.name),
            });
        }
        Ok(&self.bytes[start as usize..end as usize])
    }

    /// The tensor's values as f32, in ggml order (innermost dimension fastest).
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>, ModelError> {
        let bytes = self.tensor_bytes(t)?;
        quant::dequantize(t.ty, bytes, t.len() as usize)
            .map_err(|reason| ModelError::Gguf { path: self.path.clone(), reason: format!("tensor `{}`: {reason}", t.name) })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
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
        let len = usize::try_from(len).map_err(|_| "a string length does not fit in memory")?;
        let b = self.take(len)?;
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
                // Each item takes at least one byte: a longer array cannot fit in the file.
                if len > (self.bytes.len() - self.pos) as u64 {
                    return Err("an array is longer than the file".into());
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
