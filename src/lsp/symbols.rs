//! Document symbols: the outline of a file (its items, and the fields of signatures,
//! the parameters of tools and the parts of examples beneath them).

use lsp_types::{DocumentSymbol, SymbolKind as LspKind};

use super::analysis::Analysis;
use super::position::Positions;
use crate::syntax::ast::{Direction, Item};
use crate::syntax::{format_type, Span};

/// The outline of `a`, empty while the file does not parse.
pub fn outline(a: &Analysis, positions: &Positions<'_>) -> Vec<DocumentSymbol> {
    let Some(file) = &a.file else { return Vec::new() };
    let symbol = |name: String, detail: Option<String>, kind: LspKind, decl: Span, name_span: Span, children: Vec<DocumentSymbol>| {
        // `deprecated` is itself deprecated in favour of `tags`, but the struct still has it.
        #[allow(deprecated)]
        DocumentSymbol {
            name,
            detail,
            kind,
            tags: None,
            deprecated: None,
            range: positions.range(decl),
            selection_range: positions.range(name_span),
            children: (!children.is_empty()).then_some(children),
        }
    };
    let mut out = Vec::new();
    for item in &file.items {
        let s = match item {
            Item::Input(f) => symbol(format!("input {}", f.name.name), Some(format_type(&f.ty)), LspKind::VARIABLE, f.span, f.name.span, Vec::new()),
            Item::Output(f) => symbol(format!("output {}", f.name.name), Some(format_type(&f.ty)), LspKind::PROPERTY, f.span, f.name.span, Vec::new()),
            Item::Model(m) => symbol(m.name.name.clone(), Some(format!("model = {}", m.provider.name)), LspKind::MODULE, m.span, m.name.span, Vec::new()),
            Item::Tool(t) => {
                let params = t
                    .params
                    .iter()
                    .map(|p| symbol(p.name.name.clone(), Some(format_type(&p.ty)), LspKind::VARIABLE, p.name.span.to(p.ty.span), p.name.span, Vec::new()))
                    .collect();
                symbol(t.name.name.clone(), Some(format!("tool -> {}", format_type(&t.returns))), LspKind::FUNCTION, t.span, t.name.span, params)
            }
            Item::Signature(sig) => {
                let fields = sig
                    .fields
                    .iter()
                    .map(|f| {
                        let dir = if f.direction == Direction::In { "in" } else { "out" };
                        symbol(
                            f.field.name.name.clone(),
                            Some(format!("{dir} {}", format_type(&f.field.ty))),
                            LspKind::FIELD,
                            f.field.span,
                            f.field.name.span,
                            Vec::new(),
                        )
                    })
                    .collect();
                symbol(sig.name.name.clone(), Some("signature".into()), LspKind::INTERFACE, sig.span, sig.name.span, fields)
            }
            Item::Step(st) => {
                symbol(st.name.name.clone(), Some(format!("{} {}", st.kind.keyword(), st.target.name)), LspKind::METHOD, st.span, st.name.span, Vec::new())
            }
            Item::Return(r) => {
                let first = r.span.start;
                symbol("return".into(), None, LspKind::OBJECT, r.span, Span::new(first, first + "return".len()), Vec::new())
            }
            Item::Metric(m) => symbol(m.name.name.clone(), Some(format!("metric = {}", m.function.name)), LspKind::FUNCTION, m.span, m.name.span, Vec::new()),
            Item::Optimize(o) => symbol(format!("optimize {}", o.optimizer.name), None, LspKind::OPERATOR, o.span, o.optimizer.span, Vec::new()),
            Item::Memory(m) => symbol(format!("memory {}", m.step.name), None, LspKind::PROPERTY, m.span, m.step.span, Vec::new()),
            Item::Feedback(f) => {
                symbol(format!("feedback {}", f.name.name), f.ty.as_ref().map(format_type), LspKind::ENUM_MEMBER, f.span, f.name.span, Vec::new())
            }
            Item::Example(e) => {
                let detail = if e.held_out.is_some() { "example, held out" } else { "example" };
                symbol(e.name.name.clone(), Some(detail.into()), LspKind::EVENT, e.span, e.name.span, Vec::new())
            }
        };
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsp::position::Encoding;

    #[test]
    fn signatures_hold_their_fields_in_the_outline() {
        let src = "program p\ninput t: text\noutput c: text\nsignature S { in t: text out c: text }\nstep s = predict S { t: input.t }\nreturn { c: s.c }\n";
        let a = Analysis::new(src.into());
        let positions = Positions::new(&a.text, &a.lines, Encoding::Utf16);
        let outline = outline(&a, &positions);
        let names: Vec<&str> = outline.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["input t", "output c", "S", "s", "return"]);
        let fields: Vec<&str> = outline[2].children.iter().flatten().map(|s| s.name.as_str()).collect();
        assert_eq!(fields, ["t", "c"]);
        assert_eq!(outline[3].selection_range.start.line, 4);
    }
}
