//! The types of fields, and which values may fill which slots.

use std::fmt;

use super::constraint::TextRule;

/// The type of an input, output, signature field or tool parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// Free text.
    Text,
    /// A whole number.
    Int,
    /// A number.
    Float,
    /// `true` or `false`.
    Bool,
    /// Any JSON value.
    Json,
    /// One of a fixed set of strings.
    Label(Vec<String>),
    /// A list of values of one type.
    List(Box<Type>),
    /// Text that must satisfy constraints: `text(email)`, `text(/[0-9]{4}/)`,
    /// `text(max_length: 80)`.
    Constrained(TextRule),
}

/// The type names a user can write; `label(...)` and `list<...>` have their own syntax.
pub const TYPE_NAMES: [&str; 5] = ["text", "int", "float", "bool", "json"];

impl Type {
    /// The type a plain name stands for.
    pub fn from_name(name: &str) -> Option<Type> {
        Some(match name {
            "text" => Type::Text,
            "int" => Type::Int,
            "float" => Type::Float,
            "bool" => Type::Bool,
            "json" => Type::Json,
            _ => return None,
        })
    }

    /// Whether a value of type `from` may fill a slot of this type.
    ///
    /// A label is text; a narrower label set fits a wider one; an int is a float; anything
    /// fits `json`. Nothing converts implicitly to a label, int or bool: those must be
    /// produced as such, so a prompt never sees a value its signature did not promise.
    pub fn accepts(&self, from: &Type) -> bool {
        match (self, from) {
            (a, b) if a == b => true,
            (Type::Json, _) => true,
            (Type::Text, Type::Label(_)) => true,
            // Constrained text is text; text is not constrained text until checked.
            (Type::Text, Type::Constrained(_)) => true,
            (Type::Constrained(slot), Type::Constrained(value)) => slot.admits(value),
            (Type::Float, Type::Int) => true,
            (Type::Label(wide), Type::Label(narrow)) => narrow.iter().all(|l| wide.contains(l)),
            (Type::List(to), Type::List(from)) => to.accepts(from),
            _ => false,
        }
    }

    /// Whether values of this type are strings written freely (`text`, constrained or not).
    pub fn is_text(&self) -> bool {
        matches!(self, Type::Text | Type::Constrained(_))
    }

    /// The allowed labels, for a label type.
    pub fn labels(&self) -> Option<&[String]> {
        match self {
            Type::Label(l) => Some(l),
            _ => None,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Text => f.write_str("text"),
            Type::Int => f.write_str("int"),
            Type::Float => f.write_str("float"),
            Type::Bool => f.write_str("bool"),
            Type::Json => f.write_str("json"),
            Type::Label(labels) => write!(f, "label({})", labels.join(", ")),
            Type::List(inner) => write!(f, "list<{inner}>"),
            Type::Constrained(rule) => rule.fmt(f),
        }
    }
}

impl Type {
    /// The type as diagnostics quote it: like its `Display`, but a label set longer than
    /// `BRIEF_LABELS` (8) is cut with a count, so a message naming a type stays short however
    /// many labels the program lists (and however many messages name it).
    pub fn brief(&self) -> Brief<'_> {
        Brief(self)
    }
}

/// Label values a [`Type::brief`] shows before it counts the rest.
pub const BRIEF_LABELS: usize = 8;

/// A type written for a message; see [`Type::brief`].
pub struct Brief<'a>(&'a Type);

impl fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Type::Label(labels) if labels.len() > BRIEF_LABELS => {
                write!(f, "label({}, … and {} more)", labels[..BRIEF_LABELS].join(", "), labels.len() - BRIEF_LABELS)
            }
            Type::List(inner) => write!(f, "list<{}>", inner.brief()),
            other => other.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(ls: &[&str]) -> Type {
        Type::Label(ls.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn labels_fit_text_and_wider_labels_but_not_the_reverse() {
        assert!(Type::Text.accepts(&label(&["a", "b"])));
        assert!(!label(&["a", "b"]).accepts(&Type::Text));
        assert!(label(&["a", "b", "c"]).accepts(&label(&["b", "a"])));
        assert!(!label(&["a"]).accepts(&label(&["a", "b"])));
    }

    #[test]
    fn brief_types_cut_long_label_sets() {
        let many: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
        let ty = Type::List(Box::new(Type::Label(many)));
        assert_eq!(ty.brief().to_string(), "list<label(l0, l1, l2, l3, l4, l5, l6, l7, … and 12 more)>");
        assert_eq!(label(&["a", "b"]).brief().to_string(), "label(a, b)");
    }

    #[test]
    fn ints_widen_to_floats_and_everything_fits_json() {
        assert!(Type::Float.accepts(&Type::Int));
        assert!(!Type::Int.accepts(&Type::Float));
        assert!(Type::Json.accepts(&Type::List(Box::new(Type::Bool))));
        assert!(Type::List(Box::new(Type::Float)).accepts(&Type::List(Box::new(Type::Int))));
        assert!(!Type::Text.accepts(&Type::Int));
    }

    #[test]
    fn constrained_text_fits_text_but_text_does_not_fit_it() {
        let email = Type::Constrained(TextRule::new(Some(super::super::constraint::Format::Email), None, None, None).expect("compiles"));
        assert!(Type::Text.accepts(&email));
        assert!(!email.accepts(&Type::Text));
        assert!(email.accepts(&email.clone()));
        assert!(Type::List(Box::new(Type::Text)).accepts(&Type::List(Box::new(email.clone()))));
        assert_eq!(Type::List(Box::new(email)).to_string(), "list<text(email)>");
    }
}
