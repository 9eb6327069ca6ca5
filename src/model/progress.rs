//! Progress reporting for long model work (downloads, conversion), drawn on stderr.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where long operations report what they are doing.
pub trait Progress: Send + Sync {
    /// Starts a phase with a known number of steps (`None` for a spinner).
    fn start(&self, message: &str, total: Option<u64>);
    /// Sets how many steps of the current phase are done.
    fn set(&self, done: u64);
    /// Ends the current phase with a closing line.
    fn finish(&self, message: &str);
}

/// Progress bars on stderr (plain lines when stderr is not a terminal).
pub struct ConsoleProgress {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl ConsoleProgress {
    /// A console reporter.
    pub fn new() -> ConsoleProgress {
        ConsoleProgress { bar: std::sync::Mutex::new(None) }
    }
}

impl Default for ConsoleProgress {
    fn default() -> Self {
        ConsoleProgress::new()
    }
}

impl Progress for ConsoleProgress {
    fn start(&self, message: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})").unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner()
                .with_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap_or_else(|_| ProgressStyle::default_spinner())),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if bar.is_hidden() {
            eprintln!("{message} ...");
        }
        bar.set_message(message.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn set(&self, done: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.set_position(done);
            }
        }
    }

    fn finish(&self, message: &str) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
        eprintln!("{message}");
    }
}

/// Reports nothing; for tests and library users who draw their own.
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn set(&self, _: u64) {}
    fn finish(&self, _: &str) {}
}
