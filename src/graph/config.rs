//! Reads `{ key: value }` blocks against a schema of known keys and value kinds, so models,
//! tools and optimizers report unknown keys and wrong values the same way.

use super::suggest::did_you_mean;
use crate::syntax::ast::{Config, Ident, Value, ValueKind};
use crate::syntax::{format_value, Diagnostic};

/// The kind of value a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A number; integers are accepted.
    Number,
    /// A non-negative integer.
    Count,
    /// A string.
    Str,
    /// A list of strings.
    StrList,
    /// A bare name, e.g. a metric or model.
    Name,
    /// A list of bare names.
    NameList,
    /// `true` or `false`.
    Bool,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::Count => "a whole number of at least 0",
            Kind::Str => "a string",
            Kind::StrList => "a list of strings",
            Kind::Name => "a name",
            Kind::NameList => "a list of names",
            Kind::Bool => "`true` or `false`",
        }
    }

    fn fits(self, v: &Value) -> bool {
        match (self, &v.kind) {
            (Kind::Number, ValueKind::Int(_) | ValueKind::Float(_)) => true,
            (Kind::Count, ValueKind::Int(i)) => *i >= 0,
            (Kind::Str, ValueKind::Str(_)) => true,
            (Kind::Name, ValueKind::Path(p)) => p.len() == 1,
            (Kind::StrList, ValueKind::List(items)) => items.iter().all(|i| matches!(i.kind, ValueKind::Str(_))),
            (Kind::NameList, ValueKind::List(items)) => items.iter().all(|i| Kind::Name.fits(i)),
            (Kind::Bool, ValueKind::Bool(_)) => true,
            _ => false,
        }
    }
}

/// The entries of one block that passed the schema, for typed look-ups.
pub(super) struct Settings<'a> {
    entries: Vec<(&'a Ident, &'a Value)>,
}

/// Checks `config` against `schema`, reporting to `diags`; `owner` names the block's owner in
/// messages (e.g. "model `default`").
pub(super) fn read<'a>(config: &'a Config, schema: &[(&str, Kind)], owner: &str, diags: &mut Vec<Diagnostic>) -> Settings<'a> {
    let mut entries: Vec<(&Ident, &Value)> = Vec::new();
    for b in &config.entries {
        let Some(&(_, kind)) = schema.iter().find(|(k, _)| *k == b.name.name) else {
            let known: Vec<&str> = schema.iter().map(|(k, _)| *k).collect();
            diags.push(
                Diagnostic::error("unknown-setting", b.name.span, format!("{owner} has no setting `{}`", b.name.name))
                    .with_label("unknown setting")
                    .with_hint_opt(did_you_mean(&b.name.name, known.iter().copied()))
                    .with_hint(format!("the settings are: {}", known.join(", "))),
            );
            continue;
        };
        if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == b.name.name) {
            diags.push(Diagnostic::error("duplicate-name", b.name.span, format!("`{}` is set twice", b.name.name)).with_related(first.span, "first set here"));
            continue;
        }
        if !kind.fits(&b.value) {
            diags.push(
                Diagnostic::error("invalid-value", b.value.span, format!("`{}` takes {}, not `{}`", b.name.name, kind.describe(), format_value(&b.value)))
                    .with_label(format!("expected {}", kind.describe())),
            );
            continue;
        }
        entries.push((&b.name, &b.value));
    }
    Settings { entries }
}

impl<'a> Settings<'a> {
    /// The value of `key`, if set (and valid).
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| *v)
    }

    /// A `Number` setting.
    pub(super) fn number(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| match v.kind {
            ValueKind::Int(i) => Some(i as f64),
            ValueKind::Float(f) => Some(f),
            _ => None,
        })
    }

    /// A `Count` setting.
    pub(super) fn count(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| match v.kind {
            ValueKind::Int(i) => u64::try_from(i).ok(),
            _ => None,
        })
    }

    /// A `Bool` setting.
    pub(super) fn boolean(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|v| match v.kind {
            ValueKind::Bool(b) => Some(b),
            _ => None,
        })
    }

    /// A `Str` setting.
    pub(super) fn string(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| match &v.kind {
            ValueKind::Str(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// A `StrList` setting.
    pub(super) fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).and_then(|v| match &v.kind {
            ValueKind::List(items) => items
                .iter()
                .map(|i| match &i.kind {
                    ValueKind::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        })
    }

    /// A `Name` setting.
    pub(super) fn name(&self, key: &str) -> Option<&'a Ident> {
        self.get(key).and_then(|v| match &v.kind {
            ValueKind::Path(p) if p.len() == 1 => p.first(),
            _ => None,
        })
    }

    /// A `NameList` setting.
    pub(super) fn names(&self, key: &str) -> Option<Vec<&'a Ident>> {
        self.get(key).and_then(|v| match &v.kind {
            ValueKind::List(items) => items
                .iter()
                .map(|i| match &i.kind {
                    ValueKind::Path(p) if p.len() == 1 => p.first(),
                    _ => None,
                })
                .collect(),
            _ => None,
        })
    }
}
