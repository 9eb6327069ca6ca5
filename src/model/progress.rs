//! Progress reporting for long model work (downloads, conversion): the library reports to a
//! [`Progress`] sink its caller gives (the CLI draws bars on stderr); it never prints.

/// Where long operations report what they are doing.
pub trait Progress: Send + Sync {
    /// Starts a phase with a known number of steps (`None` for a spinner).
    fn start(&self, message: &str, total: Option<u64>);
    /// Sets how many steps of the current phase are done.
    fn set(&self, done: u64);
    /// Ends the current phase with a closing line.
    fn finish(&self, message: &str);
}

/// Reports nothing; for tests and library users who draw their own.
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn set(&self, _: u64) {}
    fn finish(&self, _: &str) {}
}
