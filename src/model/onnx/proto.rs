//! A minimal protocol-buffers encoder for the ONNX messages loopc writes. Only encoding is
//! needed (ONNX Runtime reads the files), so this is a few dozen lines rather than a
//! generated crate. Field numbers are those of `onnx.proto`.

/// An encoded message under construction.
#[derive(Clone, Debug, Default)]
pub struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    /// An empty message.
    pub fn new() -> Msg {
        Msg::default()
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }

    /// An integer field (`int32`, `int64`, enum); negative values take ten bytes, as protobuf says.
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.tag(field, 0);
        self.varint(v as u64);
        self
    }

    /// A `float` field.
    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.tag(field, 5);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.tag(field, 2);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    /// A `string` field.
    pub fn string(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    /// An embedded message field.
    pub fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_encode_as_protobuf_specifies() {
        let mut m = Msg::new();
        m.int(1, 150).string(2, "hi").int(3, -1);
        let b = m.into_bytes();
        // 150 = 0x96 0x01; "hi" length 2; -1 as ten bytes ending in 0x01.
        assert_eq!(&b[..3], &[0x08, 0x96, 0x01]);
        assert_eq!(&b[3..7], &[0x12, 2, b'h', b'i']);
        assert_eq!(b[7], 0x18);
        assert_eq!(b.len(), 8 + 10);
        assert_eq!(b[17], 0x01);
    }
}
