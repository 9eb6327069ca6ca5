//! `loopc check`: parse and check files, print diagnostics.

use serde::Serialize;

use loopc::syntax::{LineIndex, Severity};

use super::args::CheckArgs;
use super::{report, source, Outcome};

#[derive(Serialize)]
struct JsonFile {
    file: String,
    ok: bool,
    diagnostics: Vec<report::JsonDiagnostic>,
}

/// Runs `loopc check`.
pub fn run(args: &CheckArgs, color: bool) -> anyhow::Result<Outcome> {
    let mut failed = false;
    let mut json = Vec::new();
    for path in &args.files {
        let checked = source::check(path)?;
        let fails = checked.has_errors() || (args.deny_warnings && checked.diagnostics.iter().any(|d| d.severity == Severity::Warning));
        failed |= fails;
        if args.json {
            let index = LineIndex::new(&checked.source);
            json.push(JsonFile {
                file: path.display().to_string(),
                ok: !fails,
                diagnostics: checked.diagnostics.iter().map(|d| report::to_json(d, path, &checked.source, &index)).collect(),
            });
        } else {
            checked.print_diagnostics(color);
            if !fails {
                let warnings = checked.diagnostics.len();
                let suffix = if warnings > 0 { format!(" ({warnings} warning(s))") } else { String::new() };
                eprintln!("ok: {}{suffix}", path.display());
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "files": json }))?);
    }
    Ok(if failed { Outcome::Failure } else { Outcome::Success })
}
