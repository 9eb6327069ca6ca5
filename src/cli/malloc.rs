//! The process's allocator: one glibc malloc arena for the model's work, unless the
//! environment chooses.
//!
//! glibc gives every thread that allocates an arena of its own (up to 8 per core) and keeps
//! most of what a thread frees in that thread's arena. loopc's threads that allocate large
//! buffers (ONNX Runtime's pool, the scheduler, rayon's for grammar masks) each kept their own
//! high-water mark: `loopc bench model` peaked 120–170 MB higher with glibc's defaults than
//! with one arena, at the same speed within the machine's noise. An HTTP server is the other
//! case: many threads allocating small buffers at once contend for one arena's lock, and
//! `bench serve` wrote 12–46% fewer feedback items per second with it, with the same peak. So
//! `serve` keeps glibc's defaults and every other command takes one arena (see README, "Where
//! the memory goes"). This is process-wide state, so it lives here at the edge, not in the
//! library; a library user sets `MALLOC_ARENA_MAX=1` (or calls `mallopt`) themselves.

/// Whether the environment already sets malloc's arena limit (`MALLOC_ARENA_MAX`, or
/// `glibc.malloc.arena_max` among `GLIBC_TUNABLES`), in which case loopc leaves it alone.
fn set_by_user(var: impl Fn(&str) -> Option<String>) -> bool {
    var("MALLOC_ARENA_MAX").is_some() || var("GLIBC_TUNABLES").is_some_and(|t| t.split(':').any(|kv| kv.starts_with("glibc.malloc.arena_max=")))
}

/// Limits malloc to one arena, unless the environment sets the limit. Call before any thread
/// starts: arenas a thread already has stay.
pub fn one_arena() {
    if set_by_user(|name| std::env::var(name).ok()) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a parameter of the allocator; no thread but this one runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// The arena limit in effect for a command that took [`one_arena`], for benchmarks to print
/// beside their memory figures.
pub fn arenas() -> &'static str {
    if set_by_user(|name| std::env::var(name).ok()) {
        "as the environment sets"
    } else if cfg!(all(target_os = "linux", target_env = "gnu")) {
        "one"
    } else {
        "the allocator's default"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_arena_limit_a_user_sets_is_left_alone() {
        assert!(!set_by_user(env(&[])));
        assert!(set_by_user(env(&[("MALLOC_ARENA_MAX", "4")])));
        assert!(set_by_user(env(&[("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072:glibc.malloc.arena_max=8")])));
        assert!(!set_by_user(env(&[("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")])), "other tunables do not set the limit");
    }
}
