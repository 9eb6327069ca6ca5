//! Byte ranges into a source text, and the line/column view of them that people read.

use std::ops::Range;

/// A half-open byte range `start..end` into one source text.
///
/// Two spans always compare equal: a span says *where* a node stands, not *what* it says, so
/// syntax trees that differ only in layout (a formatted file and its original) are equal.
/// Compare [`Span::range`] when the position itself is under test.
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl PartialEq for Span {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Span {
    /// A span from `start` to `end` (swapped if given backwards).
    pub fn new(start: usize, end: usize) -> Self {
        Span { start: start.min(end), end: start.max(end) }
    }

    /// The byte range, for comparing positions and slicing the source.
    pub fn range(self) -> Range<usize> {
        self.start..self.end
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// Whether this span lies within a text of `len` bytes.
    pub fn fits(self, len: usize) -> bool {
        self.start <= self.end && self.end <= len
    }
}

/// Maps byte offsets of one text to 1-based line and column numbers (columns count chars).
///
/// Every look-up costs at most a few hundred bytes of scanning, however long the text or its
/// lines: besides the line starts, the index keeps the number of characters before every
/// 256th byte, so columns far into a long line are not counted from its start.
#[derive(Clone, Debug)]
pub struct LineIndex {
    line_starts: Vec<usize>,
    /// `(byte, chars before it)` at the char boundary at or before each multiple of the step.
    checkpoints: Vec<(usize, usize)>,
}

/// The byte distance between the index's character-count checkpoints.
const CHAR_CHECKPOINT: usize = 256;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCol {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub col: usize,
}

impl LineIndex {
    /// Indexes the line starts of `text`.
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut checkpoints = Vec::with_capacity(text.len() / CHAR_CHECKPOINT + 1);
        let (mut at, mut chars) = (0, 0);
        for k in 0..=text.len() / CHAR_CHECKPOINT {
            let next = floor_char_boundary(text, k * CHAR_CHECKPOINT);
            chars += text[at..next].chars().count();
            at = next;
            checkpoints.push((at, chars));
        }
        LineIndex { line_starts, checkpoints }
    }

    /// The line and column of byte `offset` in `text` (clamped to the text).
    pub fn line_col(&self, text: &str, offset: usize) -> LineCol {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let line = self.line_of(offset);
        let col = self.chars_before(text, offset) - self.chars_before(text, self.line_starts[line]) + 1;
        LineCol { line: line + 1, col }
    }

    /// The 0-based line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).saturating_sub(1)
    }

    /// How many lines the text has (one more than its newlines).
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// The byte range of 0-based `line` in `text`, without its newline (empty past the end).
    pub fn line_range(&self, text: &str, line: usize) -> Range<usize> {
        let Some(&start) = self.line_starts.get(line) else { return text.len()..text.len() };
        let end = self.line_starts.get(line + 1).map_or(text.len(), |next| next - 1);
        start.min(text.len())..end.min(text.len())
    }

    /// The number of characters in `text[..offset]`; `offset` is a char boundary.
    pub fn chars_before(&self, text: &str, offset: usize) -> usize {
        let offset = offset.min(text.len());
        match self.checkpoints.get(offset / CHAR_CHECKPOINT) {
            // The checkpoint may belong to another text given by mistake: then count honestly.
            Some(&(at, chars)) if at <= offset && text.is_char_boundary(at) => chars + text[at..offset].chars().count(),
            _ => text[..offset].chars().count(),
        }
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_chars_from_one() {
        let text = "ab\ncé\nx";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_col(text, 0), LineCol { line: 1, col: 1 });
        assert_eq!(idx.line_col(text, 3), LineCol { line: 2, col: 1 });
        // 'é' is two bytes: the offset after it is column 3.
        assert_eq!(idx.line_col(text, 6), LineCol { line: 2, col: 3 });
        assert_eq!(idx.line_col(text, 7), LineCol { line: 3, col: 1 });
        assert_eq!(idx.line_col(text, 99), LineCol { line: 3, col: 2 });
    }

    #[test]
    fn columns_far_into_a_long_line_of_wide_characters_are_counted_in_characters() {
        let text = format!("x\n{}ab", "é".repeat(70_000));
        let idx = LineIndex::new(&text);
        let b = text.len() - 1;
        assert_eq!(idx.line_col(&text, b), LineCol { line: 2, col: 70_002 });
        // An offset inside a character counts from that character's start.
        assert_eq!(idx.line_col(&text, 3), LineCol { line: 2, col: 1 });
        assert_eq!(idx.line_range(&text, 1), 2..text.len());
        assert_eq!(idx.line_range(&text, 7), text.len()..text.len());
    }

    #[test]
    fn spans_compare_equal_but_ranges_do_not() {
        assert_eq!(Span::new(1, 2), Span::new(5, 9));
        assert_ne!(Span::new(1, 2).range(), Span::new(5, 9).range());
    }
}
