//! The local Hugging Face hub cache, read-only: `hf:ORG/NAME[:FILE]` names a GGUF in the
//! snapshot `models--ORG--NAME/snapshots/REV/` that `refs/main` points to (else the newest
//! snapshot). The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`. Nothing is downloaded.

use std::path::{Path, PathBuf};

use super::super::error::ModelError;

/// A GGUF in the hub cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubGguf {
    /// `ORG/NAME`.
    pub repo: String,
    /// The file's path inside the snapshot.
    pub file: String,
    /// The file on disk (a snapshot link, followed).
    pub path: PathBuf,
}

impl HubGguf {
    /// The spec that names it: `hf:ORG/NAME:FILE`.
    pub fn spec(&self) -> String {
        format!("hf:{}:{}", self.repo, self.file)
    }
}

/// The hub cache directory.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("HF_HUB_CACHE").or_else(|| var("HF_HOME").map(|h| h.join("hub"))).or_else(|| dirs::home_dir().map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// The snapshot directory of `repo_dir` (`models--ORG--NAME`): the one `refs/main` names,
/// else the most recently changed.
fn snapshot(repo_dir: &Path) -> Option<PathBuf> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if !rev.trim().is_empty() && !rev.contains(['/', '\\']) && dir.is_dir() {
            return Some(dir);
        }
    }
    std::fs::read_dir(&snapshots).ok()?.flatten().filter(|e| e.path().is_dir()).max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok()).map(|e| e.path())
}

/// The `.gguf` files under `dir` (recursively, a few levels), as paths relative to it.
pub fn ggufs_in(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && depth < 4 {
                walk(root, &p, depth + 1, out);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")) && p.is_file() {
                if let Ok(rel) = p.strip_prefix(root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, 0, &mut out);
    out.sort();
    out
}

/// Finds `ORG/NAME[:FILE]` in the hub cache at `cache`.
pub fn find_in(cache: &Path, spec: &str) -> Result<HubGguf, ModelError> {
    let unknown = |hint: String| ModelError::UnknownModel { name: format!("hf:{spec}"), hint };
    let (repo, file) = match spec.split_once(':') {
        Some((r, f)) => (r, Some(f)),
        None => (spec, None),
    };
    let parts: Vec<&str> = repo.split('/').collect();
    let [org, name] = parts.as_slice() else {
        return Err(unknown("write `hf:ORG/NAME` or `hf:ORG/NAME:FILE.gguf`".into()));
    };
    if [org, name].iter().any(|p| p.is_empty() || **p == "." || **p == "..") {
        return Err(unknown("write `hf:ORG/NAME` or `hf:ORG/NAME:FILE.gguf`".into()));
    }
    let repo_dir = cache.join(format!("models--{org}--{name}"));
    let snap = snapshot(&repo_dir).ok_or_else(|| {
        unknown(format!(
            "the Hugging Face cache at {} has no snapshot of {repo} (loopc downloads nothing: fetch it with the hub's own tools first)",
            cache.display()
        ))
    })?;
    let files = ggufs_in(&snap);
    let chosen = match file {
        Some(f) if f.split(['/', '\\']).any(|p| p == "..") => return Err(unknown("the file name may not leave the snapshot".into())),
        Some(f) => files.iter().find(|g| g.as_str() == f || Path::new(g).file_name().and_then(|n| n.to_str()) == Some(f)).cloned().ok_or_else(|| {
            unknown(format!(
                "the snapshot {} has no `{f}` (its GGUF files: {})",
                snap.display(),
                if files.is_empty() { "none".into() } else { files.join(", ") }
            ))
        })?,
        None => match files.as_slice() {
            [one] => one.clone(),
            [] => return Err(unknown(format!("the snapshot {} holds no .gguf file", snap.display()))),
            many => return Err(unknown(format!("the snapshot holds several GGUF files; name one as `hf:{repo}:FILE`: {}", many.join(", ")))),
        },
    };
    let path = snap.join(&chosen);
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    Ok(HubGguf { repo: repo.to_string(), file: chosen, path })
}

/// Every GGUF in the hub cache's current snapshots.
pub fn list(cache: &Path) -> Vec<HubGguf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(cache) else { return out };
    let mut repos: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    repos.sort();
    for repo_dir in repos {
        let Some(dir_name) = repo_dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        let Some(repo) = dir_name.strip_prefix("models--").map(|r| r.replacen("--", "/", 1)) else { continue };
        let Some(snap) = snapshot(&repo_dir) else { continue };
        for file in ggufs_in(&snap) {
            let path = snap.join(&file);
            out.push(HubGguf { repo: repo.clone(), path: std::fs::canonicalize(&path).unwrap_or(path), file });
        }
    }
    out
}
