//! Positions as the protocol counts them. LSP positions are a 0-based line and a column in
//! code units of the negotiated encoding: UTF-16 unless the client offers UTF-8 (or UTF-32)
//! and the server picks it. loopc's spans are byte offsets; this file converts both ways.

use lsp_types::{Position, PositionEncodingKind, Range};

use crate::syntax::{LineIndex, Span};

/// How columns are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Bytes of UTF-8.
    Utf8,
    /// UTF-16 code units: the protocol's default.
    Utf16,
    /// Characters (Unicode scalar values).
    Utf32,
}

impl Encoding {
    /// The encoding to use among those a client offers (`None`: it offers none, so UTF-16).
    /// UTF-8 is loopc's own and costs nothing to convert, so it is preferred.
    pub fn negotiate(offered: Option<&[PositionEncodingKind]>) -> Encoding {
        let offered = offered.unwrap_or_default();
        if offered.contains(&PositionEncodingKind::UTF8) {
            Encoding::Utf8
        } else if offered.contains(&PositionEncodingKind::UTF32) {
            Encoding::Utf32
        } else {
            Encoding::Utf16
        }
    }

    /// The protocol's name for it.
    pub fn kind(self) -> PositionEncodingKind {
        match self {
            Encoding::Utf8 => PositionEncodingKind::UTF8,
            Encoding::Utf16 => PositionEncodingKind::UTF16,
            Encoding::Utf32 => PositionEncodingKind::UTF32,
        }
    }

    /// How many code units `c` takes.
    fn units(self, c: char) -> usize {
        match self {
            Encoding::Utf8 => c.len_utf8(),
            Encoding::Utf16 => c.len_utf16(),
            Encoding::Utf32 => 1,
        }
    }
}

/// Converts between byte offsets of one text and protocol positions.
pub struct Positions<'a> {
    text: &'a str,
    lines: &'a LineIndex,
    encoding: Encoding,
}

impl<'a> Positions<'a> {
    /// A converter for `text`, whose line index is `lines`.
    pub fn new(text: &'a str, lines: &'a LineIndex, encoding: Encoding) -> Self {
        Positions { text, lines, encoding }
    }

    /// The position of byte `offset` (clamped to the text, and down to a character start).
    pub fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.lines.line_of(offset);
        let start = self.lines.line_range(self.text, line).start.min(offset);
        let column: usize = match self.encoding {
            Encoding::Utf8 => offset - start,
            e => self.text[start..offset].chars().map(|c| e.units(c)).sum(),
        };
        Position { line: to_u32(line), character: to_u32(column) }
    }

    /// The range of `span`.
    pub fn range(&self, span: Span) -> Range {
        Range { start: self.position(span.start), end: self.position(span.end) }
    }

    /// The byte offset of `position`: a column past the line's end means its end, a line past
    /// the text's end means the text's end, and a column inside a character its start.
    pub fn offset(&self, position: Position) -> usize {
        let line = position.line as usize;
        if line >= self.lines.line_count() {
            return self.text.len();
        }
        let range = self.lines.line_range(self.text, line);
        let want = position.character as usize;
        let mut units = 0;
        for (i, c) in self.text[range.clone()].char_indices() {
            let next = units + self.encoding.units(c);
            if next > want {
                return range.start + i;
            }
            units = next;
        }
        range.end
    }

    /// The span of `range`.
    pub fn span(&self, range: Range) -> Span {
        Span::new(self.offset(range.start), self.offset(range.end))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    #[test]
    fn columns_count_code_units_of_the_encoding() {
        // `é` is 2 bytes and 1 UTF-16 unit; `🚀` is 4 bytes and 2 UTF-16 units.
        let text = "ab\né🚀x\n";
        let lines = LineIndex::new(text);
        let x = text.find('x').unwrap();
        assert_eq!(Positions::new(text, &lines, Encoding::Utf8).position(x), at(1, 6));
        assert_eq!(Positions::new(text, &lines, Encoding::Utf16).position(x), at(1, 3));
        assert_eq!(Positions::new(text, &lines, Encoding::Utf32).position(x), at(1, 2));
        for e in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
            let p = Positions::new(text, &lines, e);
            for offset in text.char_indices().map(|(i, _)| i).chain([text.len()]) {
                assert_eq!(p.offset(p.position(offset)), offset, "{e:?} round-trips {offset}");
            }
        }
    }

    #[test]
    fn positions_out_of_range_are_clamped() {
        let text = "ab\r\ncd";
        let lines = LineIndex::new(text);
        let p = Positions::new(text, &lines, Encoding::Utf16);
        assert_eq!(p.offset(at(0, 99)), 3, "the end of the line (before `\\n`)");
        assert_eq!(p.offset(at(7, 0)), text.len());
        // A column inside the surrogate pair of `🚀` means the character's start.
        let text = "🚀z";
        let lines = LineIndex::new(text);
        assert_eq!(Positions::new(text, &lines, Encoding::Utf16).offset(at(0, 1)), 0);
    }

    #[test]
    fn utf8_is_chosen_when_offered() {
        assert_eq!(Encoding::negotiate(Some(&[PositionEncodingKind::UTF16, PositionEncodingKind::UTF8])), Encoding::Utf8);
        assert_eq!(Encoding::negotiate(Some(&[PositionEncodingKind::UTF16])), Encoding::Utf16);
        assert_eq!(Encoding::negotiate(None), Encoding::Utf16);
    }
}
