//! Checks the ONNX Runtime library before loopc loads it. Loading a truncated or damaged
//! shared library can kill the process outright (a segment mapped past the end of the file
//! faults on first use), after which no error can be reported; so the file is checked first.
//!
//! When loopc provisions the library it records its size and SHA-256 in a manifest beside it
//! ([`MANIFEST`]), and before each load the library must still match: a mismatch is an error
//! saying how to provision it again. A library named by `ORT_DYLIB_PATH` is the user's own and
//! is not hashed, but it must be a non-empty regular file and, on Linux, an ELF file whose
//! headers and loadable segments lie within it, which a truncated copy is not. A cached library
//! provisioned before manifests existed gets that structural check too.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::json;

use super::error::{io, ModelError};

/// The manifest's file name, in the library's directory.
pub const MANIFEST: &str = "loopc-manifest.json";

/// Where a library to be loaded came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Named by the user (`ORT_DYLIB_PATH`): checked for shape only.
    User,
    /// Provisioned by loopc into its cache: checked against its manifest.
    Provisioned,
}

/// Records the size and SHA-256 of the library loopc has just provisioned at `lib`.
pub fn record(lib: &Path) -> Result<(), ModelError> {
    let (size, sha256) = measure(lib)?;
    let name = lib.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let manifest = json!({ "file": name, "size": size, "sha256": sha256 });
    let path = manifest_path(lib);
    crate::fs::atomic_write(&path, format!("{manifest:#}\n").as_bytes()).map_err(io("write", &path))
}

/// Checks the library at `lib` before it is loaded (see the module documentation).
pub fn check(lib: &Path, origin: Origin) -> Result<(), ModelError> {
    let meta = std::fs::metadata(lib).map_err(io("read", lib))?;
    let refuse = |reason: String| match origin {
        Origin::User => ModelError::Runtime { path: lib.to_path_buf(), reason },
        Origin::Provisioned => {
            ModelError::Provision { what: "ONNX Runtime".into(), reason: format!("the library at `{}` {reason}{}", lib.display(), repair(lib)) }
        }
    };
    if !meta.is_file() {
        return Err(refuse("is not a regular file".into()));
    }
    if meta.len() == 0 {
        return Err(refuse("is empty".into()));
    }
    let manifest = match origin {
        Origin::User => None,
        Origin::Provisioned => read_manifest(lib)?,
    };
    match manifest {
        Some((size, sha256)) => {
            if meta.len() != size {
                return Err(refuse(format!("is {} bytes, but was {size} bytes when loopc provisioned it (truncated or damaged)", meta.len())));
            }
            let (_, actual) = measure(lib)?;
            if actual != sha256 {
                return Err(refuse(format!("has SHA-256 {actual}, but had {sha256} when loopc provisioned it (damaged)")));
            }
            Ok(())
        }
        None if cfg!(target_os = "linux") => check_elf(lib, meta.len()).map_err(|reason| refuse(format!("is not a complete shared library: {reason}"))),
        None => Ok(()),
    }
}

/// How to get a good library again, for messages about a provisioned one.
fn repair(lib: &Path) -> String {
    let dir = lib.parent().unwrap_or(Path::new("."));
    format!("; delete `{}` and run `loopc model pull smollm2-135m-instruct` to provision it again", dir.display())
}

fn manifest_path(lib: &Path) -> std::path::PathBuf {
    lib.with_file_name(MANIFEST)
}

/// The recorded (size, SHA-256), or `None` when there is no manifest (an older cache).
fn read_manifest(lib: &Path) -> Result<Option<(u64, String)>, ModelError> {
    let path = manifest_path(lib);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ModelError::Io { action: "read", path, source: e }),
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match (v["size"].as_u64(), v["sha256"].as_str()) {
        (Some(size), Some(sha)) => Ok(Some((size, sha.to_string()))),
        _ => Err(ModelError::Provision { what: "ONNX Runtime".into(), reason: format!("its manifest `{}` is damaged{}", path.display(), repair(lib)) }),
    }
}

/// The file's size and SHA-256, streamed.
fn measure(path: &Path) -> Result<(u64, String), ModelError> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).map_err(io("read", path))?;
    let mut hasher = sha2::Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(io("read", path))?;
    Ok((size, super::import::hex(&hasher.finalize())))
}

/// Checks that `path` (of `len` bytes) is an ELF file whose header tables and loadable
/// segments all lie within the file.
fn check_elf(path: &Path, len: u64) -> Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut ident = [0u8; 64];
    let got = read_up_to(&mut file, &mut ident).map_err(|e| e.to_string())?;
    if got < 16 || &ident[..4] != b"\x7fELF" {
        return Err("it does not start with an ELF header".into());
    }
    let wide = match ident[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    let big = match ident[5] {
        1 => false,
        2 => true,
        d => return Err(format!("unknown ELF byte order {d}")),
    };
    let header = if wide { 64 } else { 52 };
    if got < header {
        return Err(format!("the ELF header is cut short ({got} of {header} bytes)"));
    }
    let h = Fields { bytes: &ident, big };
    let (phoff, shoff, phentsize, phnum, shentsize, shnum) = if wide {
        (h.u64(0x20), h.u64(0x28), h.u16(0x36), h.u16(0x38), h.u16(0x3A), h.u16(0x3C))
    } else {
        (h.u32(0x1C), h.u32(0x20), h.u16(0x2A), h.u16(0x2C), h.u16(0x2E), h.u16(0x30))
    };
    let within = |what: &str, offset: u64, size: u64| -> Result<(), String> {
        match offset.checked_add(size) {
            Some(end) if end <= len => Ok(()),
            _ => Err(format!("its {what} ({size} bytes at offset {offset}) lies past the end of the {len}-byte file (truncated?)")),
        }
    };
    within("program header table", phoff, phentsize * phnum)?;
    if shoff != 0 {
        within("section header table", shoff, shentsize * shnum)?;
    }
    let entry = if wide { 56 } else { 32 };
    if phnum > 0 && phentsize < entry {
        return Err(format!("its program headers are {phentsize} bytes, fewer than {entry}"));
    }
    // The table is within the file (checked above), so reading it allocates what exists.
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    file.seek(SeekFrom::Start(phoff)).and_then(|_| file.read_exact(&mut table)).map_err(|e| e.to_string())?;
    for i in 0..phnum as usize {
        let ph = Fields { bytes: &table[i * phentsize as usize..], big };
        const PT_LOAD: u64 = 1;
        let (kind, offset, size) = if wide { (ph.u32(0), ph.u64(8), ph.u64(0x20)) } else { (ph.u32(0), ph.u32(4), ph.u32(0x10)) };
        if kind == PT_LOAD {
            within(&format!("loadable segment {i}"), offset, size)?;
        }
    }
    Ok(())
}

/// Reads as much of `buf` as the file has.
fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Integers at fixed offsets of an ELF structure, in its byte order.
struct Fields<'a> {
    bytes: &'a [u8],
    big: bool,
}

impl Fields<'_> {
    fn uint(&self, at: usize, n: usize) -> u64 {
        let b = &self.bytes[at..at + n];
        let fold = |acc: u64, x: &u8| acc << 8 | u64::from(*x);
        if self.big {
            b.iter().fold(0, fold)
        } else {
            b.iter().rev().fold(0, fold)
        }
    }

    fn u16(&self, at: usize) -> u64 {
        self.uint(at, 2)
    }

    fn u32(&self, at: usize) -> u64 {
        self.uint(at, 4)
    }

    fn u64(&self, at: usize) -> u64 {
        self.uint(at, 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of an ELF file that surely exists: the test binary itself.
    fn elf_copy(dir: &Path) -> std::path::PathBuf {
        let lib = dir.join("libonnxruntime.so.test");
        std::fs::copy(std::env::current_exe().unwrap(), &lib).unwrap();
        lib
    }

    fn truncate(path: &Path, len: u64) {
        std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
    }

    #[test]
    fn a_provisioned_library_must_match_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let lib = elf_copy(dir.path());
        record(&lib).unwrap();
        check(&lib, Origin::Provisioned).unwrap();
        let len = std::fs::metadata(&lib).unwrap().len();
        truncate(&lib, len - 1);
        let err = check(&lib, Origin::Provisioned).unwrap_err().to_string();
        assert!(err.contains(&format!("bytes, but was {len} bytes when loopc provisioned it")), "{err}");
        assert!(err.contains("run `loopc model pull"), "{err}");
        // Same size, one byte changed.
        std::fs::copy(std::env::current_exe().unwrap(), &lib).unwrap();
        let mut bytes = std::fs::read(&lib).unwrap();
        bytes[1000] ^= 1;
        std::fs::write(&lib, bytes).unwrap();
        assert!(check(&lib, Origin::Provisioned).unwrap_err().to_string().contains("when loopc provisioned it (damaged)"));
    }

    #[test]
    fn a_library_without_a_manifest_must_be_a_whole_elf_file() {
        let dir = tempfile::tempdir().unwrap();
        let lib = elf_copy(dir.path());
        check(&lib, Origin::User).unwrap();
        check(&lib, Origin::Provisioned).unwrap();
        let len = std::fs::metadata(&lib).unwrap().len();
        truncate(&lib, len / 2);
        let err = check(&lib, Origin::User).unwrap_err().to_string();
        assert!(err.contains("past the end of the"), "{err}");
        truncate(&lib, 40);
        assert!(check(&lib, Origin::User).unwrap_err().to_string().contains("ELF header is cut short"));
        std::fs::write(&lib, b"not a library").unwrap();
        assert!(check(&lib, Origin::User).unwrap_err().to_string().contains("does not start with an ELF header"));
        std::fs::write(&lib, b"").unwrap();
        assert!(check(&lib, Origin::User).unwrap_err().to_string().contains("is empty"));
        assert!(check(dir.path(), Origin::User).unwrap_err().to_string().contains("not a regular file"));
    }
}
