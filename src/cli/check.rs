//! `loopc check`: parse and check files, print diagnostics.
//!
//! Every named source is checked even when an earlier one cannot be read; the exit code is 2
//! if any could not be read, else 1 if any failed, else 0.

use std::io::Write;

use serde::Serialize;

use loopc::syntax::{LineIndex, Severity};

use super::args::CheckArgs;
use super::source;
use super::{report, Outcome, Verbosity};

#[derive(Serialize)]
struct JsonFile {
    file: String,
    ok: bool,
    /// Why the file could not be checked at all (unreadable, not UTF-8, too large).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    diagnostics: Vec<report::JsonDiagnostic>,
}

/// Runs `loopc check`.
pub fn run(args: &CheckArgs, color: bool, verbosity: Verbosity) -> anyhow::Result<Outcome> {
    let inputs = source::expand(&args.files)?;
    let (mut failed, mut unreadable) = (0usize, 0usize);
    let mut json = Vec::new();
    let mut stderr = std::io::stderr().lock();
    for input in &inputs {
        let path = input.path();
        let text = match input.read() {
            Ok(text) => text,
            Err(e) => {
                unreadable += 1;
                if args.json {
                    json.push(JsonFile { file: path.display().to_string(), ok: false, error: Some(format!("{e:#}")), diagnostics: Vec::new() });
                } else {
                    writeln!(stderr, "error: {}", report::printable(&format!("{e:#}")))?;
                }
                continue;
            }
        };
        let checked = source::check_source(path, text);
        let warnings = checked.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count();
        let fails = checked.has_errors() || (args.deny_warnings && warnings > 0);
        failed += usize::from(fails);
        if args.json {
            let index = LineIndex::new(&checked.source);
            json.push(JsonFile {
                file: path.display().to_string(),
                ok: !fails,
                error: None,
                diagnostics: checked.diagnostics.iter().map(|d| report::to_json(d, path, &checked.source, &index)).collect(),
            });
            continue;
        }
        // Quiet keeps what fails the file: errors, and warnings when they are denied.
        let show_warnings = verbosity > Verbosity::Quiet || args.deny_warnings;
        let renderer = report::Renderer::new(path, &checked.source, color);
        for d in checked.diagnostics.iter().filter(|d| d.is_error() || show_warnings) {
            stderr.write_all(renderer.render(d).as_bytes())?;
        }
        if !fails && verbosity > Verbosity::Quiet {
            let suffix = if warnings > 0 { format!(" ({warnings} warning(s))") } else { String::new() };
            writeln!(stderr, "ok: {}{suffix}", report::printable(&path.display().to_string()))?;
        }
    }
    if args.json {
        let mut out = serde_json::to_string_pretty(&serde_json::json!({ "files": json }))?;
        out.push('\n');
        std::io::stdout().lock().write_all(out.as_bytes())?;
    } else if verbosity == Verbosity::Verbose {
        writeln!(stderr, "checked {} source(s): {} failed, {} unreadable", inputs.len(), failed, unreadable)?;
    }
    Ok(if unreadable > 0 {
        Outcome::Unable
    } else if failed > 0 {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}
