//! `tool` declarations: HTTP endpoints and local commands that steps can `call`.

use super::config::{self, Kind};
use super::decl::Field;
use std::collections::HashSet;

use super::suggest::{name_list, Suggester};
use super::types::Type;
use crate::syntax::ast::{Str, ToolDecl, ToolImpl};
use crate::syntax::{Diagnostic, Span};

/// A resolved tool declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// Its parameters, each usable as `{name}` in templates.
    pub params: Vec<Field>,
    /// The type of its `result`.
    pub returns: Type,
    /// How it runs.
    pub kind: ToolKind,
    /// Limits on each call.
    pub options: ToolOptions,
    /// The declaration.
    pub span: Span,
}

/// How a tool runs.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolKind {
    /// An HTTP request.
    Http {
        /// `GET`, `POST`, ...
        method: String,
        /// The URL; parameters are percent-encoded into it.
        url: Template,
        /// The request body; parameters are JSON-escaped when it looks like JSON.
        body: Option<Template>,
        /// Extra headers as (name, value template).
        headers: Vec<(String, Template)>,
    },
    /// A local program, run with an argument vector and never through a shell.
    Command {
        /// The program and its arguments.
        argv: Vec<Template>,
        /// Text written to the program's standard input.
        stdin: Option<Template>,
    },
}

/// Limits on a tool call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOptions {
    /// How long one attempt may take.
    pub timeout_ms: u64,
    /// Extra attempts after a timeout or a 5xx answer (HTTP only).
    pub retries: u32,
    /// The largest response or output accepted, in bytes.
    pub max_bytes: u64,
}

/// A string with `{param}` placeholders (`{{` and `}}` stand for braces).
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// Literal text and placeholders, in order.
    pub segments: Vec<Segment>,
}

/// A piece of a [`Template`].
#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    /// Text copied as is.
    Text(String),
    /// The value of the named parameter.
    Param(String),
}

impl Template {
    /// Parses `text`; the error says what is wrong with the braces.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("`{{{name}` is never closed with `}}`")),
                        }
                    }
                    if name.trim().is_empty() {
                        return Err("`{}` names no parameter".into());
                    }
                    if !lit.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut lit)));
                    }
                    segments.push(Segment::Param(name.trim().to_string()));
                }
                '}' => return Err("a lone `}`; write `}}` for a literal brace".into()),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            segments.push(Segment::Text(lit));
        }
        Ok(Template { segments })
    }

    /// The parameters the template uses.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(p.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// Fills the placeholders, passing each parameter's value through `escape`.
    pub fn render(&self, mut value_of: impl FnMut(&str) -> String) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Param(p) => out.push_str(&value_of(p)),
            }
        }
        out
    }
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Resolves one `tool` declaration. `params` are the already-lowered parameters.
pub(super) fn lower(decl: &ToolDecl, params: Vec<Field>, returns: Type, suggest: &Suggester, diags: &mut Vec<Diagnostic>) -> ToolSpec {
    let owner = format!("tool `{}`", decl.name.name);
    let param_names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    let names = Names { listed: &param_names, set: param_names.iter().copied().collect(), suggest };
    let template = |s: &Str, diags: &mut Vec<Diagnostic>| template(s, &owner, &names, diags);
    let (kind, schema): (ToolKind, &[(&str, Kind)]) = match &decl.implementation {
        ToolImpl::Http { method, url } => {
            let m = method.name.to_ascii_uppercase();
            if !METHODS.contains(&m.as_str()) {
                diags.push(
                    Diagnostic::error("invalid-value", method.span, format!("`{}` is not an HTTP method", method.name))
                        .with_hint(format!("use one of {}", METHODS.join(", "))),
                );
            }
            if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
                diags.push(Diagnostic::error("invalid-value", url.span, "the URL must start with http:// or https://"));
            }
            let url = template(url, diags);
            (
                ToolKind::Http { method: m, url, body: None, headers: Vec::new() },
                &[("timeout_ms", Kind::Count), ("retries", Kind::Count), ("max_bytes", Kind::Count), ("body", Kind::Str), ("headers", Kind::StrList)],
            )
        }
        ToolImpl::Command { argv } => (
            ToolKind::Command { argv: argv.iter().map(|a| template(a, diags)).collect(), stdin: None },
            &[("timeout_ms", Kind::Count), ("max_bytes", Kind::Count), ("stdin", Kind::Str)],
        ),
    };
    let settings = config::read(&decl.config, schema, &owner, diags);
    let str_of = |key: &str| {
        settings.get(key).and_then(|v| match &v.kind {
            crate::syntax::ast::ValueKind::Str(s) => Some(Str { value: s.clone(), span: v.span }),
            _ => None,
        })
    };
    let kind = match kind {
        ToolKind::Http { method, url, .. } => {
            let body = str_of("body").map(|s| template(&s, diags));
            let mut headers = Vec::new();
            if let Some(v) = settings.get("headers") {
                for h in settings.strings("headers").unwrap_or_default() {
                    match h.split_once(':') {
                        Some((name, value)) if !name.trim().is_empty() => {
                            headers.push((name.trim().to_string(), template(&Str { value: value.trim().to_string(), span: v.span }, diags)))
                        }
                        _ => diags.push(Diagnostic::error("invalid-value", v.span, format!("header `{h}` is not `Name: value`"))),
                    }
                }
            }
            ToolKind::Http { method, url, body, headers }
        }
        ToolKind::Command { argv, .. } => ToolKind::Command { argv, stdin: str_of("stdin").map(|s| template(&s, diags)) },
    };
    let options = ToolOptions {
        timeout_ms: settings.count("timeout_ms").unwrap_or(10_000),
        retries: settings.count("retries").map_or(2, |r| u32::try_from(r).unwrap_or(u32::MAX)),
        max_bytes: settings.count("max_bytes").unwrap_or(1 << 20),
    };
    if options.timeout_ms == 0 {
        if let Some(v) = settings.get("timeout_ms") {
            diags.push(Diagnostic::error("invalid-value", v.span, "`timeout_ms` must be at least 1"));
        }
    }
    ToolSpec { name: decl.name.name.clone(), params, returns, kind, options, span: decl.span }
}

/// A tool's parameter names, in order and as a set.
struct Names<'a> {
    listed: &'a [&'a str],
    set: HashSet<&'a str>,
    suggest: &'a Suggester,
}

/// Parses a template string and checks that each placeholder names a parameter.
fn template(s: &Str, owner: &str, names: &Names<'_>, diags: &mut Vec<Diagnostic>) -> Template {
    match Template::parse(&s.value) {
        Ok(t) => {
            for p in t.params() {
                if !names.set.contains(p) {
                    diags.push(
                        Diagnostic::error("unknown-name", s.span, format!("`{{{p}}}` is not a parameter of {owner}"))
                            .with_label("used here")
                            .with_hint_opt(names.suggest.did_you_mean(p, names.listed.iter().copied()))
                            .with_hint(format!("the parameters are: {}", name_list(names.listed.iter().copied()))),
                    );
                }
            }
            t
        }
        Err(msg) => {
            diags.push(Diagnostic::error("invalid-value", s.span, format!("bad template: {msg}")));
            Template { segments: Vec::new() }
        }
    }
}

impl ToolSpec {
    /// Points an HTTP tool at another URL template (a test server, another environment),
    /// checked like the declared one.
    pub fn set_url(&mut self, url: &str) -> Result<(), String> {
        let ToolKind::Http { url: current, .. } = &mut self.kind else {
            return Err(format!("tool `{}` is a command, not an HTTP tool", self.name));
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("the URL must start with http:// or https://".into());
        }
        let t = Template::parse(url).map_err(|m| format!("bad template: {m}"))?;
        if let Some(p) = t.params().find(|p| !self.params.iter().any(|f| f.name == *p)) {
            let names: Vec<&str> = self.params.iter().map(|f| f.name.as_str()).collect();
            return Err(format!("`{{{p}}}` is not a parameter of tool `{}` (its parameters: {})", self.name, names.join(", ")));
        }
        *current = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_placeholders_and_escaped_braces() {
        let t = Template::parse("a {x} {{lit}} {y}").unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), vec!["x", "y"]);
        assert_eq!(t.render(|p| p.to_uppercase()), "a X {lit} Y");
    }

    #[test]
    fn broken_templates_say_what_is_wrong() {
        assert!(Template::parse("a {x").unwrap_err().contains("never closed"));
        assert!(Template::parse("a }").unwrap_err().contains("lone"));
        assert!(Template::parse("{}").unwrap_err().contains("names no parameter"));
    }

    #[test]
    fn an_http_tools_url_can_be_replaced_with_a_checked_template() {
        let mut tool = ToolSpec {
            name: "kb".into(),
            params: vec![Field { name: "q".into(), ty: Type::Text, description: None }],
            returns: Type::Text,
            kind: ToolKind::Http { method: "GET".into(), url: Template::parse("http://a/{q}").unwrap(), body: None, headers: Vec::new() },
            options: ToolOptions { timeout_ms: 1, retries: 0, max_bytes: 1 },
            span: Span::default(),
        };
        tool.set_url("http://127.0.0.1:9/s?q={q}").unwrap();
        let ToolKind::Http { url, .. } = &tool.kind else { unreachable!() };
        assert_eq!(url.render(|_| "x".into()), "http://127.0.0.1:9/s?q=x");
        assert!(tool.set_url("http://b/{query}").unwrap_err().contains("`{query}` is not a parameter of tool `kb`"));
        assert!(tool.set_url("ftp://b").unwrap_err().contains("must start with http"));
    }
}
