//! `loopc fmt`: rewrite files in canonical layout, or check that they already are.

use anyhow::Context;

use loopc::syntax;

use super::args::FmtArgs;
use super::{report, Outcome};

/// Runs `loopc fmt`.
pub fn run(args: &FmtArgs, color: bool) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::Success;
    for path in &args.files {
        let source = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let formatted = match syntax::format_source(&source) {
            Ok(f) => f,
            Err(d) => {
                eprint!("{}", report::render(&d, path, &source, color));
                outcome = Outcome::Failure;
                continue;
            }
        };
        if args.stdout {
            print!("{formatted}");
        } else if formatted == source {
            continue;
        } else if args.check {
            eprintln!("would reformat: {}", path.display());
            outcome = Outcome::Failure;
        } else {
            loopc::fs::atomic_write(path, formatted.as_bytes()).with_context(|| format!("cannot write `{}`", path.display()))?;
            eprintln!("formatted: {}", path.display());
        }
    }
    Ok(outcome)
}
