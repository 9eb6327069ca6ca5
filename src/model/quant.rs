//! ggml tensor storage types: their dequantization to f32, following the block layouts of
//! llama.cpp's `ggml-quants.c`, and their translation into the blocks ONNX Runtime's
//! quantized operators read ([`to_blocks`]), which give the same values.

use half::{bf16, f16};

use super::onnx::weight::BlockMatrix;

/// A ggml storage type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// bfloat16.
    Bf16,
    /// 4-bit, blocks of 32 with one scale.
    Q4_0,
    /// 4-bit, blocks of 32 with a scale and a minimum.
    Q4_1,
    /// 5-bit, blocks of 32 with one scale.
    Q5_0,
    /// 5-bit, blocks of 32 with a scale and a minimum.
    Q5_1,
    /// 8-bit, blocks of 32 with one scale.
    Q8_0,
    /// 4-bit k-quant, super-blocks of 256.
    Q4K,
    /// 5-bit k-quant, super-blocks of 256.
    Q5K,
    /// 6-bit k-quant, super-blocks of 256.
    Q6K,
}

impl GgmlType {
    /// The type with ggml's numeric id, if loopc can read it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::Bf16,
            _ => return None,
        })
    }

    /// ggml's numeric id of the type.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Bf16 => 30,
        }
    }

    /// (elements per block, bytes per block).
    pub(crate) fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
        }
    }

    /// Bytes taken by `n` elements, if `n` is a whole number of blocks and the size fits in
    /// 64 bits.
    pub fn byte_size(self, n: u64) -> Option<u64> {
        let (per, bytes) = self.block();
        if n % per as u64 != 0 {
            return None;
        }
        (n / per as u64).checked_mul(bytes as u64)
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n` elements of type `ty` from `bytes`.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    if ty.byte_size(n as u64) != Some(bytes.len() as u64) {
        return Err(format!("{} bytes do not hold {n} {ty:?} values", bytes.len()));
    }
    let (per, size) = ty.block();
    let mut out = vec![0f32; n];
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::Bf16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        _ => {
            for (y, b) in out.chunks_exact_mut(per).zip(bytes.chunks_exact(size)) {
                match ty {
                    GgmlType::Q4_0 => q4_0(b, y),
                    GgmlType::Q4_1 => q4_1(b, y),
                    GgmlType::Q5_0 => q5(b, y, false),
                    GgmlType::Q5_1 => q5(b, y, true),
                    GgmlType::Q8_0 => q8_0(b, y),
                    GgmlType::Q4K => q4_k(b, y),
                    GgmlType::Q5K => q5_k(b, y),
                    _ => q6_k(b, y),
                }
            }
        }
    }
    Ok(out)
}

fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        y[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for j in 0..16 {
        y[j] = (b[4 + j] & 0x0F) as f32 * d + m;
        y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
    }
}

/// Q5_0 (`with_min` false: value = (q - 16) * d) and Q5_1 (value = q * d + m).
fn q5(b: &[u8], y: &mut [f32], with_min: bool) {
    let d = f16_at(b, 0);
    let (m, qh_at) = if with_min { (f16_at(b, 2), 4) } else { (0.0, 2) };
    let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
    let qs = &b[qh_at + 4..];
    let offset = if with_min { 0 } else { 16 };
    for j in 0..16 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        let x0 = ((qs[j] as u32 & 0x0F) | h0) as i32 - offset;
        let x1 = ((qs[j] as u32 >> 4) | h1) as i32 - offset;
        y[j] = x0 as f32 * d + m;
        y[j + 16] = x1 as f32 * d + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// The 6-bit scale and minimum of sub-block `j` of a Q4_K/Q5_K super-block.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        (((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4)) as f32, ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as f32)
    }
}

fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (i, chunk) in y.chunks_exact_mut(64).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
        let q = &qs[32 * i..32 * i + 32];
        for l in 0..32 {
            chunk[l] = d * sc1 * (q[l] & 0x0F) as f32 - dmin * m1;
            chunk[l + 32] = d * sc2 * (q[l] >> 4) as f32 - dmin * m2;
        }
    }
}

fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (i, chunk) in y.chunks_exact_mut(64).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
        let (u1, u2) = (1u8 << (2 * i), 2u8 << (2 * i));
        let ql = &qs[32 * i..32 * i + 32];
        for l in 0..32 {
            let hi1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let hi2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            chunk[l] = d * sc1 * ((ql[l] & 0x0F) + hi1) as f32 - dmin * m1;
            chunk[l + 32] = d * sc2 * ((ql[l] >> 4) + hi2) as f32 - dmin * m2;
        }
    }
}

fn q6_k(b: &[u8], y: &mut [f32]) {
    let (ql_all, qh_all, sc_all) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for (n, chunk) in y.chunks_exact_mut(128).enumerate() {
        let ql = &ql_all[64 * n..];
        let qh = &qh_all[32 * n..];
        let sc = &sc_all[8 * n..];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            chunk[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            chunk[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            chunk[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            chunk[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// The blocks of a quantized ggml tensor of `rows` × `cols` (`cols` along the blocks) as
/// `MatMulNBits` / `GatherBlockQuantized` read them (`None` for float types, which stay
/// floats). Each value is `(code − zero point) · scale + minimum`, the zero point being the
/// operators' default (the middle of the codes' range):
///
/// | ggml | codes | block | zero point | scale | minimum |
/// |---|---|---|---|---|---|
/// | Q4_0 | 4-bit q | 32 | 8 | d | — |
/// | Q4_1 | 4-bit q | 32 | 8 | d | m + 8d |
/// | Q5_0 | 8-bit q + 112 | 32 | 128 | d | — |
/// | Q5_1 | 8-bit q + 112 | 32 | 128 | d | m + 16d |
/// | Q8_0 | 8-bit q + 128 | 32 | 128 | d | — |
/// | Q4_K | 4-bit q | 32 | 8 | d · scale_j | 8 · d · scale_j − dmin · min_j |
/// | Q5_K | 8-bit q + 112 | 32 | 128 | d · scale_j | 16 · d · scale_j − dmin · min_j |
/// | Q6_K | 8-bit q + 96 | 16 | 128 | d · scale_j | — |
///
/// 5- and 6-bit codes become 8-bit ones (the operators take 2, 4 or 8 bits), shifted so the
/// operators' default zero point gives the same value; the K-quants' 6- and 8-bit sub-block
/// scales are multiplied out (exactly: an f16 times a small integer fits in f32). Formats with
/// a minimum count their codes from the middle of their range too, the minimum taking the
/// difference: the value is the same (up to the rounding of one f32 addition; formats
/// without a minimum are bit-exact), and with int8 activations the rounding of the
/// activations then meets weights centred on zero, as in llama.cpp, instead of all-positive
/// ones, which doubled the error of the default model's logits.
pub fn to_blocks(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Result<Option<BlockMatrix>, String> {
    let n = rows.checked_mul(cols).ok_or("the tensor is too large")?;
    if ty.byte_size(n as u64) != Some(bytes.len() as u64) || (ty.block().0 > 1 && cols % ty.block().0 != 0) {
        return Err(format!("{} bytes do not hold {rows} rows of {cols} {ty:?} values in whole blocks", bytes.len()));
    }
    let (bits, block, with_min) = match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 => return Ok(None),
        GgmlType::Q4_0 => (4, 32, false),
        GgmlType::Q4_1 | GgmlType::Q4K => (4, 32, true),
        GgmlType::Q5_0 | GgmlType::Q8_0 => (8, 32, false),
        GgmlType::Q5_1 | GgmlType::Q5K => (8, 32, true),
        GgmlType::Q6K => (8, 16, false),
    };
    let (per, size) = ty.block();
    let n_blocks = n / block;
    let mut out = BlockMatrix {
        rows,
        cols,
        bits,
        block,
        codes: Vec::with_capacity(n * bits as usize / 8),
        scales: Vec::with_capacity(n_blocks),
        mins: with_min.then(|| Vec::with_capacity(n_blocks)),
    };
    // Codes of one ggml block in value order, then packed.
    let mut codes = vec![0u8; per];
    for b in bytes.chunks_exact(size) {
        let mut put = |scale: f32, min: f32| {
            out.scales.push(scale);
            if let Some(m) = out.mins.as_mut() {
                m.push(min);
            }
        };
        match ty {
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let qs = if ty == GgmlType::Q4_0 { &b[2..18] } else { &b[4..20] };
                for j in 0..16 {
                    codes[j] = qs[j] & 0x0F;
                    codes[j + 16] = qs[j] >> 4;
                }
                let d = f16_at(b, 0);
                put(d, if ty == GgmlType::Q4_1 { f16_at(b, 2) + 8.0 * d } else { 0.0 });
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let with_min = ty == GgmlType::Q5_1;
                let qh_at = if with_min { 4 } else { 2 };
                let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
                let qs = &b[qh_at + 4..qh_at + 20];
                for j in 0..16 {
                    codes[j] = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4) as u8;
                    codes[j + 16] = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
                }
                codes.iter_mut().for_each(|c| *c += 112);
                let d = f16_at(b, 0);
                put(d, if with_min { f16_at(b, 2) + 16.0 * d } else { 0.0 });
            }
            GgmlType::Q8_0 => {
                for (c, &q) in codes.iter_mut().zip(&b[2..34]) {
                    *c = q ^ 0x80;
                }
                put(f16_at(b, 0), 0.0);
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let five = ty == GgmlType::Q5K;
                let (qh, qs) = if five { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
                for i in 0..4 {
                    let q = &qs[32 * i..32 * i + 32];
                    for l in 0..32 {
                        let (mut lo, mut hi) = (q[l] & 0x0F, q[l] >> 4);
                        if five {
                            lo += if qh[l] & (1 << (2 * i)) != 0 { 16 } else { 0 };
                            hi += if qh[l] & (2 << (2 * i)) != 0 { 16 } else { 0 };
                            lo += 112;
                            hi += 112;
                        }
                        codes[64 * i + l] = lo;
                        codes[64 * i + 32 + l] = hi;
                    }
                }
                let middle = if five { 16.0 } else { 8.0 };
                for j in 0..8 {
                    let (sc, m) = scale_min_k4(j, scales);
                    put(d * sc, middle * (d * sc) - dmin * m);
                }
            }
            GgmlType::Q6K => {
                let (ql_all, qh_all, sc_all) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = f16_at(b, 208);
                for n in 0..2 {
                    let (ql, qh) = (&ql_all[64 * n..], &qh_all[32 * n..]);
                    for l in 0..32 {
                        let base = 128 * n + l;
                        codes[base] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
                        codes[base + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
                        codes[base + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                        codes[base + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                    }
                }
                codes.iter_mut().for_each(|c| *c += 96);
                for &sc in sc_all {
                    put(d * (sc as i8) as f32, 0.0);
                }
            }
            GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 => return Ok(None),
        }
        if bits == 4 {
            out.codes.extend(codes.chunks_exact(2).map(|p| p[0] | (p[1] << 4)));
        } else {
            out.codes.extend_from_slice(&codes);
        }
    }
    out.check()?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_is_scale_times_signed_byte() {
        let mut b = h(0.5).to_vec();
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let y = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_eq!(y[0], -8.0);
        assert_eq!(y[31], 7.5);
    }

    #[test]
    fn q4_blocks_put_low_nibbles_first() {
        let mut b = h(2.0).to_vec();
        b.extend([0x9Au8; 16]); // low nibble 10, high nibble 9
        let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_eq!((y[0], y[16]), ((10 - 8) as f32 * 2.0, (9 - 8) as f32 * 2.0));
        let mut b = [h(0.5), h(-1.0)].concat();
        b.extend([0x31u8; 16]);
        let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        assert_eq!((y[0], y[16]), (0.5 - 1.0, 1.5 - 1.0));
    }

    #[test]
    fn q5_uses_the_high_bit_field() {
        // qh bit j sets the fifth bit of element j; bit j+16 that of element j+16.
        let mut b = h(1.0).to_vec();
        b.extend(((1u32 << 3) | (1u32 << 20)).to_le_bytes());
        b.extend([0x00u8; 16]);
        let y = dequantize(GgmlType::Q5_0, &b, 32).unwrap();
        assert_eq!((y[3], y[4], y[20], y[21]), (0.0, -16.0, 0.0, -16.0));
    }

    #[test]
    fn q4_k_applies_sub_block_scales_and_minimums() {
        let mut b = [h(1.0), h(0.5)].concat();
        // Sub-block 0: scale 2, min 4; sub-block 1: scale 3, min 6.
        let mut scales = [0u8; 12];
        scales[0] = 2;
        scales[1] = 3;
        scales[4] = 4;
        scales[5] = 6;
        b.extend(scales);
        b.extend([0x75u8; 128]); // low nibble 5, high nibble 7
        let y = dequantize(GgmlType::Q4K, &b, 256).unwrap();
        assert_eq!(y[0], 2.0 * 5.0 - 0.5 * 4.0);
        assert_eq!(y[32], 3.0 * 7.0 - 0.5 * 6.0);
    }

    #[test]
    fn q6_k_combines_low_and_high_bits() {
        let mut b = vec![0u8; 210];
        b[0] = 0x21; // element 0: low 1; element 64: low 2
        b[128] = 0b0000_0011; // element 0: high bits 3 -> q = 1 | 48 = 49
        b[192] = 2; // scale of elements 0..16
        b[196] = 1; // scale of elements 64..80
        b[208..210].copy_from_slice(&h(0.25));
        let y = dequantize(GgmlType::Q6K, &b, 256).unwrap();
        assert_eq!(y[0], 0.25 * 2.0 * (49 - 32) as f32);
        assert_eq!(y[64], 0.25 * 1.0 * (2 - 32) as f32);
    }

    #[test]
    fn every_quant_type_becomes_blocks_with_the_same_values() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for ty in crate::model::testing::QUANT_TYPES {
            let (rows, cols) = (3, 512);
            let bytes = crate::model::testing::random_blocks(ty, rows * cols, &mut rng);
            let want = dequantize(ty, &bytes, rows * cols).unwrap();
            let blocks = to_blocks(ty, &bytes, rows, cols).unwrap().expect("quantized types become blocks");
            let got = blocks.dequantize().data;
            if blocks.mins.is_none() {
                assert_eq!(got, want, "{ty:?}: formats without a minimum are bit-exact");
            }
            // With a minimum, `(q − middle)·d + (m + middle·d)` rounds once where `q·d + m` does.
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            let worst = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= 2.0 * f32::EPSILON * scale, "{ty:?}: values differ by {worst} (largest {scale})");
        }
        assert_eq!(to_blocks(GgmlType::F16, &[0u8; 8], 2, 2), Ok(None), "float types stay floats");
        assert!(to_blocks(GgmlType::Q8_0, &[0u8; 68], 2, 32).is_ok());
        assert!(to_blocks(GgmlType::Q8_0, &[0u8; 68], 1, 64).is_ok());
        assert!(to_blocks(GgmlType::Q8_0, &[0u8; 68], 4, 16).is_err(), "rows must hold whole blocks");
    }

    #[test]
    fn sizes_past_64_bits_are_rejected() {
        assert_eq!(GgmlType::F32.byte_size(u64::MAX / 2), None);
        assert_eq!(GgmlType::Q8_0.byte_size(u64::MAX / 32 * 32), None, "34 bytes per 32 values");
    }

    #[test]
    fn sizes_that_are_not_whole_blocks_are_rejected() {
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 34], 31).is_err());
        assert_eq!(GgmlType::Q4_1.byte_size(64), Some(40));
    }
}
