//! The `memory` declaration: a model step that draws demos for each request from what people
//! said of earlier runs (trusted corrections and approved answers), most similar first, within
//! a token budget. The checker resolves the step and reads the settings; the serving side
//! (`learn::memory`) keeps the memory, and the runtime only asks it (`runtime::memory`).
//!
//! ```text
//! memory classify { demos: 4, tokens: 400, min_trust: 0.6, max_age_days: 30 }
//! ```

use super::config::{self, Kind};
use super::decl::{Step, StepId, StepKind};
use super::suggest::did_you_mean;
use crate::syntax::ast::MemoryDecl;
use crate::syntax::{Diagnostic, Span};

/// A resolved `memory` declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct MemorySpec {
    /// The step that recalls.
    pub step: StepId,
    /// The most demos recalled per request.
    pub demos: usize,
    /// The most prompt tokens the recalled demos may take.
    pub tokens: usize,
    /// The least trust a user needs for their feedback to be remembered (0 to 1).
    pub min_trust: f64,
    /// Only feedback from the last this many days (`None`: any age).
    pub max_age_days: Option<u64>,
    /// The most inputs remembered (the newest are kept).
    pub keep: usize,
    /// Whether answers people approved are remembered too, not only corrections.
    pub approved: bool,
    /// The declaration.
    pub span: Span,
}

impl MemorySpec {
    /// Demos per request unless set.
    pub const DEFAULT_DEMOS: usize = 4;
    /// The token budget unless set.
    pub const DEFAULT_TOKENS: usize = 400;
    /// The least trust unless set: a user whose feedback agrees with others' less often than
    /// not is left out.
    pub const DEFAULT_MIN_TRUST: f64 = 0.5;
    /// Inputs kept unless set.
    pub const DEFAULT_KEEP: usize = 100_000;
}

/// The settings of a `memory` block, with their kinds; `lsp::catalog` documents each.
pub(super) const SETTINGS: [(&str, Kind); 6] = [
    ("demos", Kind::Count),
    ("tokens", Kind::Count),
    ("min_trust", Kind::Number),
    ("max_age_days", Kind::Count),
    ("keep", Kind::Count),
    ("approved", Kind::Bool),
];

/// Resolves the `memory` declarations against the program's steps: each names a model step
/// (not a tool call), once, with settings in range.
pub(super) fn lower(decls: &[&MemoryDecl], steps: &[Step], diags: &mut Vec<Diagnostic>) -> Vec<MemorySpec> {
    let mut out: Vec<MemorySpec> = Vec::new();
    for decl in decls {
        let name = decl.step.name.as_str();
        let Some(i) = steps.iter().position(|s| s.name == name) else {
            diags.push(
                Diagnostic::error("unknown-name", decl.step.span, format!("unknown step `{name}`"))
                    .with_label("not a step")
                    .with_hint_opt(did_you_mean(name, steps.iter().map(|s| s.name.as_str()))),
            );
            continue;
        };
        if steps[i].kind == StepKind::Call {
            diags.push(
                Diagnostic::error("invalid-value", decl.step.span, format!("step `{name}` calls a tool; only model steps recall demos"))
                    .with_label("a tool call"),
            );
            continue;
        }
        if let Some(first) = out.iter().find(|m| m.step == StepId(i)) {
            diags.push(
                Diagnostic::error("duplicate-name", decl.step.span, format!("step `{name}` has a memory already")).with_related(first.span, "declared here"),
            );
            continue;
        }
        let s = config::read(&decl.config, &SETTINGS, &format!("memory `{name}`"), diags);
        let at_least_one = |key: &str, default: usize, diags: &mut Vec<Diagnostic>| match s.count(key) {
            Some(0) => {
                let span = s.get(key).map_or(decl.span, |v| v.span);
                diags.push(Diagnostic::error("invalid-value", span, format!("`{key}` must be at least 1")).with_label("0"));
                default
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => default,
        };
        let demos = at_least_one("demos", MemorySpec::DEFAULT_DEMOS, diags);
        let tokens = at_least_one("tokens", MemorySpec::DEFAULT_TOKENS, diags);
        let keep = at_least_one("keep", MemorySpec::DEFAULT_KEEP, diags);
        let max_age_days = match s.count("max_age_days") {
            Some(0) => {
                let span = s.get("max_age_days").map_or(decl.span, |v| v.span);
                diags.push(Diagnostic::error("invalid-value", span, "`max_age_days` must be at least 1 (leave it out for any age)").with_label("0"));
                None
            }
            other => other,
        };
        let min_trust = match s.number("min_trust") {
            Some(t) if !(0.0..=1.0).contains(&t) => {
                let span = s.get("min_trust").map_or(decl.span, |v| v.span);
                diags.push(Diagnostic::error("invalid-value", span, format!("`min_trust` is a share between 0 and 1, not {t}")).with_label("out of range"));
                MemorySpec::DEFAULT_MIN_TRUST
            }
            Some(t) => t,
            None => MemorySpec::DEFAULT_MIN_TRUST,
        };
        out.push(MemorySpec {
            step: StepId(i),
            demos,
            tokens,
            min_trust,
            max_age_days,
            keep,
            approved: s.boolean("approved").unwrap_or(true),
            span: decl.span,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::syntax::LineIndex;

    const PROGRAM: &str = "program p\ninput q: text\noutput a: text\nsignature S { in x: text out y: text }\n\
                           tool t(x: text) -> text = command [\"echo\", \"{x}\"]\nstep s = predict S { x: input.q }\nstep c = call t { x: s.y }\nreturn { a: c.result }\n";

    /// The diagnostics of `memory` lines added to a program, as `code line:col message`.
    fn check(memory: &str) -> Vec<String> {
        let src = format!("{PROGRAM}{memory}\n");
        let index = LineIndex::new(&src);
        crate::graph::check_text(&src)
            .diagnostics
            .iter()
            .map(|d| {
                let lc = index.line_col(&src, d.span.start);
                format!("{} {}:{} {}", d.code, lc.line, lc.col, d.message)
            })
            .collect()
    }

    #[test]
    fn a_memory_reads_its_settings_and_defaults_the_rest() {
        let src = format!("{PROGRAM}memory s {{ demos: 2, min_trust: 0.7, max_age_days: 30, approved: false }}\n");
        let dag = crate::graph::check_text(&src).dag.unwrap();
        let m = &dag.memory()[0];
        assert_eq!((m.step.0, m.demos, m.tokens, m.min_trust, m.max_age_days, m.keep, m.approved), (0, 2, 400, 0.7, Some(30), 100_000, false));
        let plain = format!("{PROGRAM}memory s\n");
        let m = crate::graph::check_text(&plain).dag.unwrap().memory()[0].clone();
        assert_eq!((m.demos, m.min_trust, m.max_age_days, m.approved), (4, 0.5, None, true));
    }

    #[test]
    fn a_memory_names_one_model_step_once() {
        assert_eq!(check("memory z"), ["unknown-name 9:8 unknown step `z`"]);
        assert_eq!(check("memory c"), ["invalid-value 9:8 step `c` calls a tool; only model steps recall demos"]);
        assert_eq!(check("memory s\nmemory s"), ["duplicate-name 10:8 step `s` has a memory already"]);
    }

    #[test]
    fn settings_out_of_range_are_refused_at_the_value() {
        assert_eq!(check("memory s { min_trust: 1.5 }"), ["invalid-value 9:23 `min_trust` is a share between 0 and 1, not 1.5"]);
        assert_eq!(check("memory s { demos: 0 }"), ["invalid-value 9:19 `demos` must be at least 1"]);
        assert_eq!(check("memory s { max_age_days: 0 }"), ["invalid-value 9:26 `max_age_days` must be at least 1 (leave it out for any age)"]);
        assert_eq!(check("memory s { demo: 3 }"), ["unknown-setting 9:12 memory `s` has no setting `demo`"]);
    }

    #[test]
    fn a_memory_formats_and_parses_back_the_same() {
        let src = format!("{PROGRAM}memory   s {{demos:2,min_trust:0.7}}\n");
        let formatted = crate::syntax::format_source(&src).unwrap();
        assert!(formatted.contains("memory s { demos: 2, min_trust: 0.7 }"), "{formatted}");
        assert_eq!(crate::syntax::format_source(&formatted).unwrap(), formatted);
    }
}
