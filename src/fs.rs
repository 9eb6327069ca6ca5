//! File-system helpers every stage may use: atomic writes, so a crash or Ctrl-C never leaves
//! a half-written artifact, store or model file behind, and durable line appends for outputs
//! written row by row (JSON lines) that must keep every finished row.
//!
//! An atomic write replaces what a path *names*: writing through a symlink replaces the file the
//! link points to (in that file's directory) and keeps the link; a file that exists keeps its
//! permission bits (and, where the OS allows, its owner); a new file gets `0644` under the umask.
//! Not kept: hard links (the other names keep the old contents), ACLs and extended attributes.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of new files, before the umask: what `touch` and editors give.
const NEW_FILE_MODE: u32 = 0o644;

/// Symlinks followed before giving up, as Linux's own limit (`ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// Writes `contents` to `path` atomically: into a temporary file in the same directory as the
/// file `path` names (following symlinks), flushed to disk, renamed over it, and the directory
/// flushed too. Readers see the old file or the new one; after a crash, one of them is there.
pub fn atomic_write(path: &Path, contents: &[u8]) -> io::Result<()> {
    atomic_write_with(path, |w| w.write_all(contents))
}

/// [`atomic_write`] for contents produced piece by piece: `write` streams them into a buffered
/// writer over the temporary file, so large outputs are never held in memory whole. If `write`
/// fails, `path` is untouched and the temporary file removed.
pub fn atomic_write_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let target = resolve_symlinks(path)?;
    let dir = parent_dir(&target);
    std::fs::create_dir_all(dir)?;
    let existing = std::fs::metadata(&target).ok().filter(|m| m.is_file());
    let name = target.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    // The mode is passed to open(2), so the umask applies to it as to any new file.
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").permissions(Permissions::from_mode(NEW_FILE_MODE)).tempfile_in(dir)?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        write(&mut w)?;
        w.flush()?;
    }
    if let Some(meta) = &existing {
        // fchmod is not masked by the umask: the file keeps exactly its mode.
        tmp.as_file().set_permissions(meta.permissions())?;
        keep_owner(tmp.as_file(), meta);
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// A file that lines are appended to, for outputs written row by row (`run --out`).
///
/// Durability: a line is in the kernel once [`LineAppender::write_line`] returns, so it survives
/// the process being killed (even `kill -9`); it survives a power loss or an OS crash only after
/// [`LineAppender::sync`]. Syncing after every line costs a disk flush per line (milliseconds on
/// a disk, far less on an SSD); syncing once per batch of lines makes a crash of the machine
/// lose at most the unsynced batch. [`append_line`] syncs every line.
#[derive(Debug)]
pub struct LineAppender {
    file: File,
    cut: u64,
}

impl LineAppender {
    /// Opens `path` for appending (following symlinks), creating it with mode `0644` under the
    /// umask. A last line without its newline was cut short by a crash mid-write and never
    /// acknowledged: it is cut off, so the next line starts a line of its own
    /// ([`LineAppender::cut_bytes`] says how much was cut).
    pub fn open(path: &Path) -> io::Result<LineAppender> {
        let target = resolve_symlinks(path)?;
        let dir = parent_dir(&target);
        std::fs::create_dir_all(dir)?;
        let existed = target.exists();
        let file = OpenOptions::new().read(true).append(true).create(true).mode(NEW_FILE_MODE).open(&target)?;
        let cut = cut_torn_line(&file)?;
        if !existed {
            // The new name must survive a crash too, or its synced lines are unreachable.
            sync_dir(dir)?;
        }
        Ok(LineAppender { file, cut })
    }

    /// Appends `line` and a newline in one write. A line may not contain a newline itself.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        if line.contains('\n') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a line to append contains a newline"));
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf)
    }

    /// Flushes every line written so far to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The bytes of a torn last line cut off when the file was opened (0 for a sound file).
    pub fn cut_bytes(&self) -> u64 {
        self.cut
    }
}

/// Appends `line` and a newline to `path` and flushes it to disk: when this returns, the line
/// survives a crash. Opens the file each time; for many lines keep a [`LineAppender`].
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    let mut appender = LineAppender::open(path)?;
    appender.write_line(line)?;
    appender.sync()
}

/// The SHA-256 of `bytes` as lowercase hex (content hashes in artifacts and caches).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The path `path` ends at after following symlinks (each relative to the link's directory),
/// whether or not that file exists yet. Symlinked directories on the way are left to the OS.
fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)?;
                current = if target.is_absolute() { target } else { parent_dir(&current).join(target) };
            }
            _ => return Ok(current),
        }
    }
    Err(io::Error::other(format!("`{}`: more than {MAX_SYMLINKS} levels of symbolic links", path.display())))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Flushes a directory, so a rename or a new name in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        // Some file systems can't flush a directory; their renames are as durable as they get.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

/// Gives `file` the owner of the file it replaces, where the OS allows it (a user may pass a
/// file to a group they belong to; only root may pass it to another user). Failing is not an
/// error: the write still happens, owned by whoever wrote it, as editors do.
fn keep_owner(file: &File, old: &std::fs::Metadata) {
    let Ok(new) = file.metadata() else { return };
    if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
        let _ = std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()));
    }
}

/// Cuts `file` back to just after its last newline, if it does not end with one; returns the
/// bytes cut.
fn cut_torn_line(file: &File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(end - start).unwrap_or(0)];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
    }
    Ok(len - end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// The process's umask, read without changing it (umask(2) can only be read by setting it).
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("Linux reports the umask");
        u32::from_str_radix(line.trim(), 8).unwrap()
    }

    #[test]
    fn atomic_write_replaces_the_whole_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        atomic_write(&path, b"first, longer contents").unwrap();
        atomic_write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn writing_through_a_symlink_replaces_its_target_and_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/prog.loop");
        std::fs::write(&target, "old").unwrap();
        let link = dir.path().join("prog.loop");
        symlink("real/prog.loop", &link).unwrap();
        atomic_write(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real/prog.loop"));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path().join("real")).unwrap().count(), 1, "no temporary left beside the target");
    }

    #[test]
    fn chains_of_links_and_dangling_links_are_followed_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        symlink(&file, dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        atomic_write(&dir.path().join("b"), b"made through a dangling chain").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "made through a dangling chain");
        assert!(std::fs::symlink_metadata(dir.path().join("b")).unwrap().file_type().is_symlink());
        symlink("loop", dir.path().join("loop")).unwrap();
        let err = atomic_write(&dir.path().join("loop"), b"x").unwrap_err();
        assert!(err.to_string().contains("levels of symbolic links"), "{err}");
    }

    #[test]
    fn an_existing_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        atomic_write(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o640);
        std::fs::set_permissions(&path, Permissions::from_mode(0o755)).unwrap();
        atomic_write(&path, b"newer").unwrap();
        assert_eq!(mode(&path), 0o755);
    }

    #[test]
    fn a_new_file_gets_0644_under_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.json");
        atomic_write(&path, b"{}").unwrap();
        assert_eq!(mode(&path), 0o644 & !umask());
        let appended = dir.path().join("rows.jsonl");
        append_line(&appended, "{}").unwrap();
        assert_eq!(mode(&appended), 0o644 & !umask());
    }

    #[test]
    fn a_failing_writer_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let err = atomic_write_with(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        atomic_write_with(&path, |w| (0..3).try_for_each(|i| writeln!(w, "row {i}"))).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "row 0\nrow 1\nrow 2\n");
    }

    #[test]
    fn appended_lines_accumulate_and_a_torn_last_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        append_line(&path, r#"{"row": 1}"#).unwrap();
        append_line(&path, r#"{"row": 2}"#).unwrap();
        // A crash in the middle of the third line.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(br#"{"ro"#).unwrap();
        let mut appender = LineAppender::open(&path).unwrap();
        assert_eq!(appender.cut_bytes(), 4);
        appender.write_line(r#"{"row": 3}"#).unwrap();
        appender.sync().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"row\": 1}\n{\"row\": 2}\n{\"row\": 3}\n");
        assert_eq!(appender.write_line("two\nlines").unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_file_that_is_one_torn_line_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, "x".repeat(10_000)).unwrap();
        assert_eq!(LineAppender::open(&path).unwrap().cut_bytes(), 10_000);
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
}
