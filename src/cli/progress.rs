//! Progress bars on stderr for the library's long work (provisioning, model conversion).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use loopc::model::progress::Progress;

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
