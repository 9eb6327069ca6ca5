//! Prompt text in pieces of two kinds: markup written by loopc or the program's author (chat
//! markers, field markers, instructions), where a model's special tokens such as
//! `<|im_end|>` mean what they say, and data (input values, demo values, tool results,
//! earlier answers), where they are plain characters. A user who types `<|im_end|>` gets the
//! seven characters, never the control token.

/// One piece of prompt text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", content = "text", rename_all = "snake_case")]
pub enum Piece {
    /// Text whose special-token spellings are special tokens.
    Markup(String),
    /// Text encoded with special tokens disabled.
    Data(String),
}

impl Piece {
    /// The text of the piece.
    pub fn text(&self) -> &str {
        match self {
            Piece::Markup(t) | Piece::Data(t) => t,
        }
    }
}

/// Text for a model, as markup and data pieces. Adjacent pieces of one kind are merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PromptText {
    pieces: Vec<Piece>,
}

impl PromptText {
    /// Empty text.
    pub fn new() -> PromptText {
        PromptText::default()
    }

    /// Text that is all markup.
    pub fn markup(text: impl Into<String>) -> PromptText {
        let mut t = PromptText::new();
        t.push_markup(&text.into());
        t
    }

    /// Text that is all data.
    pub fn data(text: impl Into<String>) -> PromptText {
        let mut t = PromptText::new();
        t.push_data(&text.into());
        t
    }

    /// Appends markup.
    pub fn push_markup(&mut self, text: &str) -> &mut PromptText {
        if text.is_empty() {
            return self;
        }
        match self.pieces.last_mut() {
            Some(Piece::Markup(last)) => last.push_str(text),
            _ => self.pieces.push(Piece::Markup(text.to_string())),
        }
        self
    }

    /// Appends data. Spaces that end the markup before it move into the data, so `Name: ` +
    /// `value` tokenizes as `Name:` + ` value`, as it would in one piece (byte-level BPE
    /// attaches a space to the word after it).
    pub fn push_data(&mut self, text: &str) -> &mut PromptText {
        if text.is_empty() {
            return self;
        }
        let mut moved = String::new();
        if let Some(Piece::Markup(last)) = self.pieces.last_mut() {
            let kept = last.trim_end_matches(' ').len();
            moved = last.split_off(kept);
            if last.is_empty() {
                self.pieces.pop();
            }
        }
        moved.push_str(text);
        match self.pieces.last_mut() {
            Some(Piece::Data(last)) => last.push_str(&moved),
            _ => self.pieces.push(Piece::Data(moved)),
        }
        self
    }

    /// Appends other text, keeping each piece's kind.
    pub fn append(&mut self, other: &PromptText) -> &mut PromptText {
        for p in &other.pieces {
            match p {
                Piece::Markup(t) => self.push_markup(t),
                Piece::Data(t) => self.push_data(t),
            };
        }
        self
    }

    /// The text with whitespace removed from its start (`left`) and its end (`right`),
    /// across pieces; each piece keeps its kind.
    pub fn trimmed(&self, left: bool, right: bool) -> PromptText {
        let mut pieces = self.pieces.clone();
        fn text(p: &mut Piece) -> &mut String {
            match p {
                Piece::Markup(t) | Piece::Data(t) => t,
            }
        }
        if left {
            while let Some(first) = pieces.first_mut() {
                let t = text(first);
                *t = t.trim_start().to_string();
                if !t.is_empty() {
                    break;
                }
                pieces.remove(0);
            }
        }
        if right {
            while let Some(last) = pieces.last_mut() {
                let t = text(last);
                t.truncate(t.trim_end().len());
                if !t.is_empty() {
                    break;
                }
                pieces.pop();
            }
        }
        PromptText { pieces }
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(|p| p.text().len()).sum()
    }

    /// The text as one string (for remote chat APIs, display and tests).
    pub fn to_plain(&self) -> String {
        self.pieces.iter().map(Piece::text).collect()
    }
}

impl From<&str> for PromptText {
    /// Text written by a caller who controls it wholly (e.g. `loopc generate "..."`) is markup.
    fn from(text: &str) -> PromptText {
        PromptText::markup(text)
    }
}

impl From<String> for PromptText {
    fn from(text: String) -> PromptText {
        PromptText::markup(text)
    }
}

impl std::fmt::Display for PromptText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.pieces {
            f.write_str(p.text())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_one_kind_merge_and_kinds_stay_apart() {
        let mut t = PromptText::markup("<|im_start|>user\n");
        t.push_data("hi ").push_data("<|im_end|>").push_markup("<|im_end|>\n");
        assert_eq!(t.pieces(), [Piece::Markup("<|im_start|>user\n".into()), Piece::Data("hi <|im_end|>".into()), Piece::Markup("<|im_end|>\n".into())]);
        assert_eq!(t.to_plain(), "<|im_start|>user\nhi <|im_end|><|im_end|>\n");
    }

    #[test]
    fn spaces_before_data_move_into_the_data() {
        let mut t = PromptText::markup("Review: ");
        t.push_data("great");
        assert_eq!(t.pieces(), [Piece::Markup("Review:".into()), Piece::Data(" great".into())]);
        let mut only_space = PromptText::markup(" ");
        only_space.push_data("x");
        assert_eq!(only_space.pieces(), [Piece::Data(" x".into())]);
    }

    #[test]
    fn trimming_crosses_pieces_and_keeps_their_kinds() {
        let mut t = PromptText::markup(" \n");
        t.push_data("  hi ").push_markup(" ");
        assert_eq!(t.trimmed(true, true).pieces(), [Piece::Data("hi".into())]);
        assert_eq!(t.trimmed(false, true).pieces(), [Piece::Markup(" \n".into()), Piece::Data("  hi".into())]);
    }

    #[test]
    fn empty_pushes_add_nothing() {
        let mut t = PromptText::new();
        t.push_data("").push_markup("");
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
    }
}
