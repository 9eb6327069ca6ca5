//! Byte-level mutations of a seed corpus, for the fuzz targets in `fuzz.rs` and
//! `properties.rs`: proptest picks a seed file and a few edits (bit flips, interesting bytes and
//! integers, deletions, insertions, duplications, truncations, splices with another seed), and
//! shrinks a failing case to the fewest, smallest edits.
//!
//! Each target runs [`cases`] cases: 200 by default, `LOOPC_FUZZ_CASES` to run more (say
//! `LOOPC_FUZZ_CASES=20000 cargo test --release --test fuzz` for a long session).

use std::path::Path;

use proptest::prelude::*;

/// How many cases each fuzz target runs.
pub fn cases() -> u32 {
    std::env::var("LOOPC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

/// The files of a seed directory whose names end in one of `extensions`, sorted by name.
pub fn seeds(dir: &Path, extensions: &[&str]) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    paths.retain(|p| p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e)));
    paths.sort();
    assert!(!paths.is_empty(), "no seeds in {}", dir.display());
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One edit; positions and lengths are taken modulo the input's length when applied.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flip one bit.
    FlipBit(usize, u8),
    /// Overwrite one byte with a value that often matters (delimiters, limits, high bits).
    SetByte(usize, u8),
    /// Overwrite 4 or 8 bytes with an integer that often matters (0, maxima; `None` is the
    /// input's own length, as an offset pointing at its end).
    SetInt(usize, Option<u64>, bool),
    /// Remove a range.
    Delete(usize, usize),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Copy a range to another place.
    Duplicate(usize, usize, usize),
    /// Cut the input short.
    Truncate(usize),
    /// Keep this input's head and another seed's tail.
    Splice(usize, usize, usize),
}

const BYTES: [u8; 16] = [0, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'[', b']', b',', b':', b'\n', b'\\', b'-', b'9', b'<'];
const INTS: [Option<u64>; 10] =
    [Some(0), Some(1), Some(0x7f), Some(0xffff), Some(0x7fff_ffff), Some(0xffff_ffff), Some(1 << 40), Some(i64::MAX as u64), Some(u64::MAX), None];

/// One mutation.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(a, b)| Mutation::FlipBit(a, b)),
        (any::<usize>(), prop::sample::select(&BYTES[..])).prop_map(|(a, b)| Mutation::SetByte(a, b)),
        (any::<usize>(), prop::sample::select(&INTS[..]), any::<bool>()).prop_map(|(a, v, wide)| Mutation::SetInt(a, v, wide)),
        (any::<usize>(), 1usize..64).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(a, b)| Mutation::Insert(a, b)),
        (any::<usize>(), 1usize..64, any::<usize>()).prop_map(|(a, n, to)| Mutation::Duplicate(a, n, to)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(other, a, b)| Mutation::Splice(other, a, b)),
    ]
}

/// A seed and the edits to make to it.
pub fn case(n_seeds: usize) -> impl Strategy<Value = (usize, Vec<Mutation>)> {
    (0..n_seeds, prop::collection::vec(mutation(), 1..6))
}

/// `seeds[which]` with `edits` applied.
pub fn apply(seeds: &[Vec<u8>], which: usize, edits: &[Mutation]) -> Vec<u8> {
    let mut b = seeds[which].clone();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match e {
            Mutation::FlipBit(i, bit) if !b.is_empty() => {
                let i = at(*i, b.len());
                b[i] ^= 1 << bit;
            }
            Mutation::SetByte(i, v) if !b.is_empty() => {
                let i = at(*i, b.len());
                b[i] = *v;
            }
            Mutation::SetInt(i, v, wide) => {
                let n = if *wide { 8 } else { 4 };
                let v = v.unwrap_or(b.len() as u64);
                if b.len() >= n {
                    let i = at(*i, b.len() - n + 1);
                    b[i..i + n].copy_from_slice(&v.to_le_bytes()[..n]);
                }
            }
            Mutation::Delete(i, n) => {
                let i = at(*i, b.len() + 1);
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Insert(i, bytes) => {
                let i = at(*i, b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Duplicate(i, n, to) if !b.is_empty() => {
                let i = at(*i, b.len());
                let piece = b[i..(i + n).min(b.len())].to_vec();
                let to = at(*to, b.len() + 1);
                b.splice(to..to, piece);
            }
            Mutation::Truncate(i) => {
                let i = at(*i, b.len() + 1);
                b.truncate(i);
            }
            Mutation::Splice(other, i, j) => {
                let other = &seeds[other % seeds.len()];
                let i = at(*i, b.len() + 1);
                let j = at(*j, other.len() + 1);
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            _ => {}
        }
    }
    b
}
