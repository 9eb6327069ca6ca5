//! "Did you mean ...?" for misspelled names.
//!
//! Suggesting compares a name with every candidate, so a file with thousands of misspelt
//! references among thousands of names would take quadratic time. The checker therefore
//! suggests through a [`Suggester`], which stops suggesting once it has made
//! [`SUGGESTION_BUDGET`] comparisons in a file; and names longer than [`MAX_SUGGESTED_LEN`]
//! bytes are never compared (string similarity is quadratic in length too).

use std::cell::Cell;

/// Comparisons one file's "did you mean" hints may cost in all.
pub const SUGGESTION_BUDGET: usize = 200_000;

/// Names longer than this (in bytes) get no suggestion and are never suggested.
pub const MAX_SUGGESTED_LEN: usize = 64;

/// The candidate closest to `name`, when one is close enough to be a likely typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if name.len() > MAX_SUGGESTED_LEN {
        return None;
    }
    candidates
        .into_iter()
        .filter(|c| *c != name && c.len() <= MAX_SUGGESTED_LEN)
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The "did you mean" help line for `name`, if a candidate is close.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    nearest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// Makes "did you mean" hints for one file within [`SUGGESTION_BUDGET`] comparisons.
#[derive(Debug)]
pub(super) struct Suggester {
    left: Cell<usize>,
}

impl Suggester {
    /// A suggester with the whole budget.
    pub(super) fn new() -> Self {
        Suggester::with_budget(SUGGESTION_BUDGET)
    }

    fn with_budget(comparisons: usize) -> Self {
        Suggester { left: Cell::new(comparisons) }
    }

    /// Whether a look-up among `candidates` names would still get an answer; callers that must
    /// gather the candidates first ask, so that gathering stays within the budget too.
    pub(super) fn affords(&self, candidates: usize) -> bool {
        candidates <= self.left.get()
    }

    /// Like [`did_you_mean`], or `None` once the file's budget is spent. A look-up that would
    /// overdraw the budget makes no comparison at all, so no hint comes from a partial search.
    pub(super) fn did_you_mean<'a, I>(&self, name: &str, candidates: I) -> Option<String>
    where
        I: IntoIterator<Item = &'a str>,
        I::IntoIter: ExactSizeIterator,
    {
        let candidates = candidates.into_iter();
        let cost = candidates.len();
        let left = self.left.get();
        if cost > left {
            self.left.set(0);
            return None;
        }
        self.left.set(left - cost);
        did_you_mean(name, candidates)
    }
}

/// How many names a "the fields are: ..." hint lists before it says how many more there are.
const LISTED_NAMES: usize = 20;

/// `names` joined with commas for a hint, the first [`LISTED_NAMES`] of them and a count of the
/// rest: a hint repeated for each of thousands of errors must not list thousands of names (nor
/// walk them: the count comes from the iterator's length).
pub(super) fn name_list<'a, I>(names: I) -> String
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: ExactSizeIterator,
{
    let names = names.into_iter();
    let total = names.len();
    let mut out = names.take(LISTED_NAMES).collect::<Vec<_>>().join(", ");
    if total > LISTED_NAMES {
        out.push_str(&format!(" and {} more", total - LISTED_NAMES));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        assert_eq!(nearest("clasify", ["classify", "draft", "notes"]), Some("classify"));
        assert_eq!(nearest("zzz", ["classify", "draft"]), None);
    }

    #[test]
    fn long_name_lists_are_cut_with_a_count() {
        let names: Vec<String> = (0..25).map(|i| format!("f{i}")).collect();
        let listed = name_list(names.iter().map(String::as_str));
        assert!(listed.starts_with("f0, f1, ") && listed.ends_with("f19 and 5 more"), "{listed}");
        assert_eq!(name_list(["a", "b"]), "a, b");
    }

    #[test]
    fn very_long_names_are_not_compared() {
        let long = "a".repeat(MAX_SUGGESTED_LEN + 1);
        assert_eq!(nearest(&long, [long[1..].to_string().as_str()]), None);
    }

    #[test]
    fn a_spent_budget_stops_suggesting() {
        let s = Suggester::with_budget(5);
        assert!(s.did_you_mean("clasify", ["classify", "draft", "notes"]).is_some());
        assert_eq!(s.did_you_mean("clasify", ["classify", "draft", "notes"]), None, "3 more would overdraw 2");
        assert_eq!(s.did_you_mean("clasify", ["classify"]), None, "an overdraft spends the rest");
    }
}
