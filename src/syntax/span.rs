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
#[derive(Clone, Debug)]
pub struct LineIndex {
    line_starts: Vec<usize>,
}

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
        LineIndex { line_starts }
    }

    /// The line and column of byte `offset` in `text` (clamped to the text).
    pub fn line_col(&self, text: &str, offset: usize) -> LineCol {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let col = text[self.line_starts[line]..offset].chars().count() + 1;
        LineCol { line: line + 1, col }
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
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
    fn spans_compare_equal_but_ranges_do_not() {
        assert_eq!(Span::new(1, 2), Span::new(5, 9));
        assert_ne!(Span::new(1, 2).range(), Span::new(5, 9).range());
    }
}
