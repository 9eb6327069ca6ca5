//! `loopc fmt`: rewrite files in canonical layout, or check that they already are.
//!
//! `-` formats standard input to standard output. Every named source is handled even when an
//! earlier one cannot be read or parsed; the exit code is 2 if any could not be read or
//! written, else 1 if any has a syntax error (or, with `--check`, is not formatted), else 0.

use std::io::Write;

use anyhow::Context;

use loopc::syntax;

use super::args::FmtArgs;
use super::source::{self, Input};
use super::{report, Outcome, Verbosity};

/// Runs `loopc fmt`.
pub fn run(args: &FmtArgs, color: bool, verbosity: Verbosity) -> anyhow::Result<Outcome> {
    let inputs = source::expand(&args.files)?;
    let (mut failed, mut unable) = (false, false);
    let mut stderr = std::io::stderr().lock();
    for input in &inputs {
        let path = input.path();
        let source = match input.read() {
            Ok(text) => text,
            Err(e) => {
                writeln!(stderr, "error: {}", report::printable(&format!("{e:#}")))?;
                unable = true;
                continue;
            }
        };
        let formatted = match syntax::format_source(&source) {
            Ok(f) => f,
            Err(d) => {
                stderr.write_all(report::render(&d, path, &source, color).as_bytes())?;
                failed = true;
                continue;
            }
        };
        let to_stdout = args.stdout || (*input == Input::Stdin && !args.check);
        if to_stdout {
            std::io::stdout().lock().write_all(formatted.as_bytes())?;
        } else if formatted == source {
            if verbosity == Verbosity::Verbose {
                writeln!(stderr, "unchanged: {}", report::printable(&path.display().to_string()))?;
            }
        } else if args.check {
            writeln!(stderr, "would reformat: {}", report::printable(&path.display().to_string()))?;
            failed = true;
        } else {
            let written = loopc::fs::atomic_write(path, formatted.as_bytes()).with_context(|| format!("cannot write `{}`", path.display()));
            match written {
                Ok(()) if verbosity > Verbosity::Quiet => writeln!(stderr, "formatted: {}", report::printable(&path.display().to_string()))?,
                Ok(()) => {}
                Err(e) => {
                    writeln!(stderr, "error: {}", report::printable(&format!("{e:#}")))?;
                    unable = true;
                }
            }
        }
    }
    Ok(if unable {
        Outcome::Unable
    } else if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}
