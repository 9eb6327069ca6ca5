//! `tool` declarations: HTTP endpoints and local commands that steps can `call`, and the rules
//! that keep a call's arguments from steering them: where a placeholder may stand in a URL
//! ([`url_slots`]) and in an argument vector ([`arg_rule`]). The checker reports a placeholder
//! that breaks a rule; the runtime applies the same rules to the values.

use super::config::{self, Kind};
use super::decl::Field;
use std::collections::HashSet;

use super::suggest::{name_list, Suggester};
use super::types::Type;
use crate::syntax::ast::{Str, ToolDecl, ToolImpl, Value, ValueKind};
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
        url: ToolTemplate,
        /// The request body; parameters are JSON-escaped when it looks like JSON.
        body: Option<ToolTemplate>,
        /// Extra headers as (name, value template).
        headers: Vec<(String, ToolTemplate)>,
    },
    /// A local program, run with an argument vector and never through a shell.
    Command {
        /// The program and its arguments; the program (`argv[0]`) has no placeholder.
        argv: Vec<ToolTemplate>,
        /// Text written to the program's standard input.
        stdin: Option<ToolTemplate>,
        /// Environment variables passed on from loopc's environment besides `PATH`, `LANG`
        /// and `LC_ALL`; the program sees no other variable.
        env: Vec<String>,
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
pub struct ToolTemplate {
    /// Literal text and placeholders, in order.
    pub segments: Vec<Segment>,
}

/// A piece of a [`ToolTemplate`].
#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    /// Text copied as is.
    Text(String),
    /// The value of the named parameter.
    Param(String),
}

impl ToolTemplate {
    /// Parses `text`; the error says what is wrong with the braces.
    pub fn parse(text: &str) -> Result<ToolTemplate, String> {
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
        Ok(ToolTemplate { segments })
    }

    /// The parameters the template uses.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(p.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// The text, when the template has no placeholder.
    pub fn literal(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [] => Some(""),
            [Segment::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The fixed text before the first placeholder (all of it when there is none).
    pub fn literal_prefix(&self) -> &str {
        match self.segments.first() {
            Some(Segment::Text(t)) => t,
            _ => "",
        }
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

/// Where a placeholder stands in a URL template; it decides how the value is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlSlot {
    /// In the path, inside one segment: the value can't add, remove or climb segments.
    Path,
    /// In the query string: the value can't add parameters or end the query.
    Query,
    /// In the fragment, which is never sent to the server.
    Fragment,
}

/// Why a URL template can't be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlTemplateError {
    /// Occurs when the URL does not start with `http://` or `https://`.
    #[error("the URL must start with http:// or https://")]
    NotHttp,
    /// Occurs when nothing stands between `://` and the path.
    #[error("the URL names no host")]
    NoHost,
    /// Occurs when a placeholder stands in the scheme, host or port.
    #[error("`{{{0}}}` stands in the URL's scheme, host or port, where a value could send the request to another server")]
    PlaceholderInOrigin(String),
}

/// The slot of each placeholder of the URL template `url`, in order. It must start with
/// `http://` or `https://` and name a host, and no placeholder may stand in the scheme, host
/// or port, where a value could send the request to another server.
pub fn url_slots(url: &ToolTemplate) -> Result<Vec<UrlSlot>, UrlTemplateError> {
    /// How far the scan has come.
    #[derive(Clone, Copy, PartialEq)]
    enum Part {
        Scheme,
        Authority,
        Slot(UrlSlot),
    }
    let starts_well = matches!(url.segments.first(), Some(Segment::Text(t)) if t.starts_with("http://") || t.starts_with("https://"));
    if !starts_well {
        return Err(UrlTemplateError::NotHttp);
    }
    let mut part = Part::Scheme;
    let mut scheme = String::new();
    let mut host_len = 0;
    let mut slots = Vec::new();
    for s in &url.segments {
        match s {
            Segment::Text(t) => {
                for c in t.chars() {
                    part = match (part, c) {
                        (Part::Scheme, c) => {
                            scheme.push(c);
                            if scheme.ends_with("://") {
                                Part::Authority
                            } else {
                                Part::Scheme
                            }
                        }
                        // `\` ends the host like `/` does: URL parsers treat them alike for http.
                        (Part::Authority, '/' | '\\') => Part::Slot(UrlSlot::Path),
                        (Part::Authority | Part::Slot(UrlSlot::Path), '?') => Part::Slot(UrlSlot::Query),
                        (Part::Authority | Part::Slot(UrlSlot::Path | UrlSlot::Query), '#') => Part::Slot(UrlSlot::Fragment),
                        (Part::Authority, _) => {
                            host_len += 1;
                            Part::Authority
                        }
                        (other, _) => other,
                    }
                }
            }
            Segment::Param(p) => match part {
                Part::Scheme | Part::Authority => return Err(UrlTemplateError::PlaceholderInOrigin(p.clone())),
                Part::Slot(slot) => slots.push(slot),
            },
        }
    }
    if host_len == 0 {
        return Err(UrlTemplateError::NoHost);
    }
    Ok(slots)
}

/// What the placeholders of one argument of a command may let a value do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgRule {
    /// The argument has no placeholder.
    Fixed,
    /// Any value is safe: it follows fixed text that can't start an option (`/data/{p}`,
    /// `--name={p}`), or the argument comes after an end-of-options `--`.
    Free,
    /// The value starts the argument, before any `--`: a value starting with `-` would be read
    /// as an option, so the runtime refuses it.
    NoLeadingDash,
    /// A value here could pick the program, an option or code to run; the text says how.
    Unsafe(String),
}

/// The rule for `argv[index]` of a command tool: the program is fixed, options are fixed,
/// and values never stand where a well-known interpreter reads code.
pub fn arg_rule(argv: &[ToolTemplate], index: usize) -> ArgRule {
    let Some(arg) = argv.get(index) else { return ArgRule::Fixed };
    let Some(first) = arg.params().next() else { return ArgRule::Fixed };
    if index == 0 {
        return ArgRule::Unsafe(format!("`{{{first}}}` stands in the program, which a command tool fixes in its text"));
    }
    if let Some(runner) = runner(argv, index) {
        return ArgRule::Unsafe(format!(
            "`{{{first}}}` is passed to `{runner}`, which runs a program or command line taken from its arguments; loopc can't tell which argument that is"
        ));
    }
    if let Some(how) = code_slot(argv, index) {
        return ArgRule::Unsafe(format!("`{{{first}}}` stands where {how} reads code to run"));
    }
    if argv[1..index].iter().any(|a| a.literal() == Some("--")) {
        return ArgRule::Free;
    }
    let prefix = arg.literal_prefix();
    if prefix.is_empty() {
        ArgRule::NoLeadingDash
    } else if !prefix.starts_with('-') || (prefix.starts_with("--") && prefix.contains('=')) {
        ArgRule::Free
    } else {
        ArgRule::Unsafe(format!("`{{{first}}}` follows `{prefix}`, so a value could add or pick options"))
    }
}

/// Programs that run another program, or a command line, named in their arguments. Which
/// argument that is depends on each one's options, so a placeholder anywhere in their
/// arguments is refused: run the program directly (a tool has `timeout_ms`) or from a script.
const RUNNERS: &[&str] = &[
    "env", "sudo", "doas", "su", "runuser", "nice", "nohup", "timeout", "xargs", "setsid", "stdbuf", "ionice", "chrt", "taskset", "flock", "chroot", "time",
    "strace", "ltrace", "watch", "ssh", "exec", "busybox", "unshare", "nsenter", "firejail", "bwrap", "parallel", "script",
];

/// `find`'s actions whose next argument is a program.
const FIND_EXEC: [&str; 4] = ["-exec", "-execdir", "-ok", "-okdir"];

/// If `argv[index]` goes to a program that runs programs from its arguments, names it.
fn runner(argv: &[ToolTemplate], index: usize) -> Option<&str> {
    let program = argv.first()?.literal()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    if RUNNERS.contains(&base) {
        return Some(base);
    }
    let after_exec = index >= 2 && argv[index - 1].literal().is_some_and(|a| FIND_EXEC.contains(&a));
    (base == "find" && after_exec).then_some("find -exec")
}

/// How a well-known interpreter takes code in its arguments.
struct Interpreter {
    /// Program names, without directory or version suffix (`python3.12` is `python`).
    names: &'static [&'static str],
    /// Letters that, in a single-dash cluster (`-c`, `-lc`, `-ne`), make the next argument code.
    next_is_code: &'static str,
    /// Long options whose next argument (or `=` value) is code.
    long: &'static [&'static str],
    /// Letters that, in a cluster, make the first operand code (`sh -c SCRIPT`).
    first_operand_after: &'static str,
    /// Whether the first operand is code without any flag (awk, sed), unless a script file is given.
    first_operand_is_code: bool,
    /// Letters of options that take a separate argument (so it is not the first operand),
    /// including the script-file option that turns `first_operand_is_code` off.
    takes_arg: &'static str,
    /// The letter naming a script file (`-f`), if any.
    script_file: Option<char>,
}

const INTERPRETERS: &[Interpreter] = &[
    Interpreter {
        names: &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish"],
        next_is_code: "",
        long: &[],
        first_operand_after: "c",
        first_operand_is_code: false,
        takes_arg: "oO",
        script_file: None,
    },
    Interpreter {
        names: &["python", "pypy"],
        next_is_code: "c",
        long: &[],
        first_operand_after: "",
        first_operand_is_code: false,
        takes_arg: "WXm",
        script_file: None,
    },
    Interpreter {
        names: &["perl", "ruby"],
        next_is_code: "eE",
        long: &[],
        first_operand_after: "",
        first_operand_is_code: false,
        takes_arg: "",
        script_file: None,
    },
    Interpreter {
        names: &["node", "nodejs", "deno", "bun"],
        next_is_code: "ep",
        long: &["--eval", "--print"],
        first_operand_after: "",
        first_operand_is_code: false,
        takes_arg: "r",
        script_file: None,
    },
    Interpreter { names: &["php"], next_is_code: "r", long: &[], first_operand_after: "", first_operand_is_code: false, takes_arg: "", script_file: None },
    Interpreter {
        names: &["awk", "gawk", "mawk", "nawk"],
        next_is_code: "",
        long: &["--source"],
        first_operand_after: "",
        first_operand_is_code: true,
        takes_arg: "Fvf",
        script_file: Some('f'),
    },
    Interpreter {
        names: &["sed", "gsed"],
        next_is_code: "e",
        long: &["--expression"],
        first_operand_after: "",
        first_operand_is_code: true,
        takes_arg: "efl",
        script_file: Some('f'),
    },
];

/// If `argv[index]` is where a well-known interpreter reads code, says which (`` `sh -c` ``).
fn code_slot(argv: &[ToolTemplate], index: usize) -> Option<String> {
    let program = argv.first()?.literal()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    let name = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    let interp = INTERPRETERS.iter().find(|i| i.names.contains(&name))?;
    let prefix = argv.get(index)?.literal_prefix();
    if let Some(flag) = interp.long.iter().find(|l| prefix.strip_prefix(**l).is_some_and(|rest| rest.starts_with('='))) {
        return Some(format!("`{base} {flag}`"));
    }
    // Walk the arguments as the interpreter would: options, their arguments, then operands.
    let mut code_next: Option<String> = None;
    let mut skip_next = false;
    let mut operand_is_code = interp.first_operand_is_code.then(|| format!("`{base}`"));
    let mut options_done = false;
    for (i, arg) in argv.iter().enumerate().skip(1).take(index) {
        if let Some(flag) = code_next.take() {
            if i == index {
                return Some(flag);
            }
            // Code given with a flag makes the operands data (`sed -e SCRIPT FILE`).
            operand_is_code = None;
            continue;
        }
        if std::mem::take(&mut skip_next) {
            continue;
        }
        let text = arg.literal_prefix();
        if !options_done && arg.literal() == Some("--") {
            options_done = true;
        } else if !options_done && text.starts_with("--") {
            if let Some(flag) = interp.long.iter().find(|l| arg.literal() == Some(**l)) {
                code_next = Some(format!("`{base} {flag}`"));
            }
        } else if !options_done && text.len() > 1 && text.starts_with('-') {
            let letters = &text[1..];
            for (j, c) in letters.char_indices() {
                let last = j + c.len_utf8() == letters.len();
                if interp.next_is_code.contains(c) {
                    // `-e` alone takes the next argument; `-eCODE` carries it.
                    if last {
                        code_next = Some(format!("`{base} -{c}`"));
                    }
                    operand_is_code = None;
                    break;
                }
                if interp.first_operand_after.contains(c) {
                    operand_is_code = Some(format!("`{base} -{c}`"));
                }
                if interp.takes_arg.contains(c) {
                    if interp.script_file == Some(c) {
                        operand_is_code = None;
                    }
                    skip_next = last;
                    break;
                }
            }
        } else {
            // The first operand is code or not; the ones after it are data either way.
            return if i == index { operand_is_code } else { None };
        }
    }
    None
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Headers that decide where a request goes or how its body is framed and read: a value must
/// not choose them, so their templates may hold no placeholder.
const FIXED_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-connection",
];

/// The code of the diagnostic for a placeholder where a value could steer its tool.
const UNSAFE_PLACEHOLDER: &str = "unsafe-placeholder";

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
            let url_template = template(url, diags);
            // A template that does not parse has been reported; its slots mean nothing.
            let parsed = ToolTemplate::parse(&url.value).is_ok();
            match url_slots(&url_template).err().filter(|_| parsed) {
                Some(e @ UrlTemplateError::PlaceholderInOrigin(_)) => diags.push(
                    Diagnostic::error(UNSAFE_PLACEHOLDER, url.span, e.to_string())
                        .with_hint("placeholders may stand in the path, the query or the fragment; write the origin in full"),
                ),
                Some(e) => diags.push(Diagnostic::error("invalid-value", url.span, e.to_string())),
                // The scheme is still checked on the raw text, so both problems are reported.
                None if !(parsed || url.value.starts_with("http://") || url.value.starts_with("https://")) => {
                    diags.push(Diagnostic::error("invalid-value", url.span, UrlTemplateError::NotHttp.to_string()))
                }
                None => {}
            }
            (
                ToolKind::Http { method: m, url: url_template, body: None, headers: Vec::new() },
                &[("timeout_ms", Kind::Count), ("retries", Kind::Count), ("max_bytes", Kind::Count), ("body", Kind::Str), ("headers", Kind::StrList)],
            )
        }
        ToolImpl::Command { argv: args } => {
            let argv: Vec<ToolTemplate> = args.iter().map(|a| template(a, diags)).collect();
            if args.first().is_some_and(|a| a.value.trim().is_empty()) {
                diags.push(Diagnostic::error("invalid-value", args[0].span, "the program of a command tool is empty"));
            }
            for (i, a) in args.iter().enumerate() {
                if let ArgRule::Unsafe(reason) = arg_rule(&argv, i) {
                    diags.push(
                        Diagnostic::error(UNSAFE_PLACEHOLDER, a.span, reason)
                            .with_label("a value here could steer the command")
                            .with_hint("pass values as whole arguments after `--` (`[\"prog\", \"--\", \"{p}\"]`), as `--name={p}`, or through `stdin`"),
                    );
                }
            }
            (
                ToolKind::Command { argv, stdin: None, env: Vec::new() },
                &[("timeout_ms", Kind::Count), ("max_bytes", Kind::Count), ("stdin", Kind::Str), ("env", Kind::StrList)],
            )
        }
    };
    let settings = config::read(&decl.config, schema, &owner, diags);
    let str_of = |key: &str| {
        settings.get(key).and_then(|v| match &v.kind {
            ValueKind::Str(s) => Some(Str { value: s.clone(), span: v.span }),
            _ => None,
        })
    };
    let kind = match kind {
        ToolKind::Http { method, url, .. } => {
            let body = str_of("body").map(|s| template(&s, diags));
            let mut headers = Vec::new();
            for h in settings.get("headers").map(str_items).unwrap_or_default() {
                match h.value.split_once(':') {
                    Some((name, value)) if is_token(name.trim()) => {
                        let name = name.trim().to_string();
                        let value = template(&Str { value: value.trim().to_string(), span: h.span }, diags);
                        if let Some(p) = value.params().next().filter(|_| FIXED_HEADERS.contains(&name.to_ascii_lowercase().as_str())) {
                            diags.push(
                                Diagnostic::error(
                                    UNSAFE_PLACEHOLDER,
                                    h.span,
                                    format!("`{{{p}}}` stands in header `{name}`, which decides where the request goes or how its body is read"),
                                )
                                .with_hint("write this header's value in full; placeholders may stand in other headers"),
                            );
                        }
                        headers.push((name, value));
                    }
                    _ => diags.push(
                        Diagnostic::error("invalid-value", h.span, format!("header `{}` is not `Name: value`", h.value))
                            .with_hint("a header name is letters, digits and `!#$%&'*+-.^_`|~`, without placeholders"),
                    ),
                }
            }
            ToolKind::Http { method, url, body, headers }
        }
        ToolKind::Command { argv, .. } => {
            let mut env = Vec::new();
            for name in settings.get("env").map(str_items).unwrap_or_default() {
                if is_env_name(&name.value) {
                    env.push(name.value);
                } else {
                    diags.push(
                        Diagnostic::error("invalid-value", name.span, format!("`{}` is not the name of an environment variable", name.value))
                            .with_hint("`env` lists names (`[\"API_TOKEN\"]`); the values come from loopc's environment"),
                    );
                }
            }
            ToolKind::Command { argv, stdin: str_of("stdin").map(|s| template(&s, diags)), env }
        }
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

/// The strings of a list setting, each with its own span.
fn str_items(v: &Value) -> Vec<Str> {
    match &v.kind {
        ValueKind::List(items) => items
            .iter()
            .filter_map(|i| match &i.kind {
                ValueKind::Str(s) => Some(Str { value: s.clone(), span: i.span }),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `name` is a portable environment variable name.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A tool's parameter names, in order and as a set.
struct Names<'a> {
    listed: &'a [&'a str],
    set: HashSet<&'a str>,
    suggest: &'a Suggester,
}

/// Parses a template string and checks that each placeholder names a parameter.
fn template(s: &Str, owner: &str, names: &Names<'_>, diags: &mut Vec<Diagnostic>) -> ToolTemplate {
    match ToolTemplate::parse(&s.value) {
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
            ToolTemplate { segments: Vec::new() }
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
        let t = ToolTemplate::parse(url).map_err(|m| format!("bad template: {m}"))?;
        url_slots(&t).map_err(|e| e.to_string())?;
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
        let t = ToolTemplate::parse("a {x} {{lit}} {y}").unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), vec!["x", "y"]);
        assert_eq!(t.render(|p| p.to_uppercase()), "a X {lit} Y");
    }

    #[test]
    fn broken_templates_say_what_is_wrong() {
        assert!(ToolTemplate::parse("a {x").unwrap_err().contains("never closed"));
        assert!(ToolTemplate::parse("a }").unwrap_err().contains("lone"));
        assert!(ToolTemplate::parse("{}").unwrap_err().contains("names no parameter"));
    }

    #[test]
    fn an_http_tools_url_can_be_replaced_with_a_checked_template() {
        let mut tool = ToolSpec {
            name: "kb".into(),
            params: vec![Field { name: "q".into(), ty: Type::Text, description: None }],
            returns: Type::Text,
            kind: ToolKind::Http { method: "GET".into(), url: ToolTemplate::parse("http://a/{q}").unwrap(), body: None, headers: Vec::new() },
            options: ToolOptions { timeout_ms: 1, retries: 0, max_bytes: 1 },
            span: Span::default(),
        };
        tool.set_url("http://127.0.0.1:9/s?q={q}").unwrap();
        let ToolKind::Http { url, .. } = &tool.kind else { unreachable!() };
        assert_eq!(url.render(|_| "x".into()), "http://127.0.0.1:9/s?q=x");
        assert!(tool.set_url("http://b/{query}").unwrap_err().contains("`{query}` is not a parameter of tool `kb`"));
        assert!(tool.set_url("ftp://b").unwrap_err().contains("must start with http"));
        assert!(tool.set_url("http://{q}.example/").unwrap_err().contains("stands in the URL's scheme, host or port"));
    }

    /// The errors `decl` (a tool `t` with parameter `p`) gets, as (code, message, spanned text).
    fn check(decl: &str) -> Vec<(&'static str, String, String)> {
        let src = format!("program x\ninput q: text\noutput a: text\n{decl}\nstep s = call t {{ p: input.q }}\nreturn {{ a: s.result }}\n");
        let file = crate::syntax::parse(&src).unwrap_or_else(|d| panic!("{d:?}"));
        let lowered = crate::graph::lower(&file);
        lowered.diagnostics.iter().filter(|d| d.is_error()).map(|d| (d.code, d.message.clone(), src[d.span.range()].to_string())).collect()
    }

    #[test]
    fn url_placeholders_may_not_stand_in_the_scheme_host_or_port() {
        for url in ["http://{p}/x", "http://api.{p}.com/x", "http://h:{p}/x", "http://{p}@h/x", "https://h{p}"] {
            let errs = check(&format!(r#"tool t(p: text) -> text = http GET "{url}""#));
            assert_eq!(errs.len(), 1, "{url}: {errs:?}");
            assert_eq!(errs[0].0, "unsafe-placeholder", "{url}");
            assert!(errs[0].1.contains("`{p}` stands in the URL's scheme, host or port"), "{url}: {}", errs[0].1);
            assert_eq!(errs[0].2, format!("\"{url}\""), "points at the URL");
        }
        for url in ["http://h/{p}", "http://h:8080/a/{p}?q={p}#{p}", "http://h?q={p}"] {
            assert_eq!(check(&format!(r#"tool t(p: text) -> text = http GET "{url}""#)), vec![], "{url}");
        }
        let errs = check(r#"tool t(p: text) -> text = http GET "http:///{p}""#);
        assert_eq!(errs[0].1, "the URL names no host");
    }

    #[test]
    fn url_slots_follow_the_part_of_the_url() {
        let t = ToolTemplate::parse("http://h/a/{p}/b?x={p}&y=z{p}#{p}").unwrap();
        assert_eq!(url_slots(&t).unwrap(), vec![UrlSlot::Path, UrlSlot::Query, UrlSlot::Query, UrlSlot::Fragment]);
    }

    #[test]
    fn a_command_placeholder_may_not_pick_the_program_an_option_or_code() {
        let cases = [
            (r#"["{p}", "x"]"#, "stands in the program"),
            (r#"["sort", "-{p}"]"#, "follows `-`"),
            (r#"["sort", "-r{p}"]"#, "follows `-r`"),
            (r#"["sort", "--{p}"]"#, "follows `--`"),
            (r#"["sort", "--out{p}"]"#, "follows `--out`"),
            (r#"["sh", "-c", "echo {p}"]"#, "where `sh -c` reads code"),
            (r#"["/bin/bash", "-lc", "{p}"]"#, "where `bash -c` reads code"),
            (r#"["python3", "-c", "print('{p}')"]"#, "where `python3 -c` reads code"),
            (r#"["perl", "-ne", "{p}", "f"]"#, "where `perl -e` reads code"),
            (r#"["node", "--eval={p}"]"#, "where `node --eval` reads code"),
            (r#"["awk", "-F", ",", "{p}"]"#, "where `awk` reads code"),
            (r#"["sed", "{p}", "file"]"#, "where `sed` reads code"),
            (r#"["sed", "-n", "-e", "{p}"]"#, "where `sed -e` reads code"),
            (r#"["timeout", "5", "{p}"]"#, "is passed to `timeout`, which runs a program"),
            (r#"["ssh", "host", "ls", "--", "{p}"]"#, "is passed to `ssh`"),
            (r#"["find", ".", "-exec", "{p}", ";"]"#, "is passed to `find -exec`"),
        ];
        for (argv, says) in cases {
            let errs = check(&format!("tool t(p: text) -> text = command {argv}"));
            assert_eq!(errs.len(), 1, "{argv}: {errs:?}");
            assert_eq!(errs[0].0, "unsafe-placeholder", "{argv}");
            assert!(errs[0].1.contains(says), "{argv}: {}", errs[0].1);
            assert!(errs[0].2.contains("{p}"), "{argv}: points at the argument, not {}", errs[0].2);
        }
    }

    #[test]
    fn command_placeholders_as_operands_option_values_or_after_the_end_of_options_are_fine() {
        for argv in [
            r#"["sort", "{p}"]"#,
            r#"["sort", "--", "-{p}"]"#,
            r#"["grep", "--regexp={p}", "f"]"#,
            r#"["cat", "/data/{p}.txt"]"#,
            r#"["sh", "-c", "echo \"$1\"", "sh", "{p}"]"#,
            r#"["awk", "{{print $1}}", "{p}"]"#,
            r#"["awk", "-f", "prog.awk", "{p}"]"#,
            r#"["sed", "-e", "s/a/b/", "{p}"]"#,
            r#"["python3", "script.py", "{p}"]"#,
            r#"["perl", "-w", "script.pl", "{p}"]"#,
            r#"["find", "{p}", "-name", "*.txt"]"#,
        ] {
            assert_eq!(check(&format!("tool t(p: text) -> text = command {argv}")), vec![], "{argv}");
        }
    }

    #[test]
    fn arg_rules_tell_the_runtime_what_to_check() {
        let argv: Vec<ToolTemplate> = ["sort", "{p}", "--key={p}", "--", "{p}"].iter().map(|a| ToolTemplate::parse(a).unwrap()).collect();
        let rules: Vec<ArgRule> = (0..argv.len()).map(|i| arg_rule(&argv, i)).collect();
        assert_eq!(rules, vec![ArgRule::Fixed, ArgRule::NoLeadingDash, ArgRule::Free, ArgRule::Fixed, ArgRule::Free]);
    }

    #[test]
    fn headers_that_route_or_frame_the_request_take_no_placeholder() {
        let errs = check(r#"tool t(p: text) -> text = http GET "http://h/" { headers: ["Host: {p}.example", "X-Key: {p}"] }"#);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].1.contains("`{p}` stands in header `Host`"), "{}", errs[0].1);
        assert_eq!(errs[0].2, r#""Host: {p}.example""#, "points at the header");
        let errs = check(r#"tool t(p: text) -> text = http GET "http://h/" { headers: ["X-{p}: 1"] }"#);
        assert!(errs[0].1.contains("is not `Name: value`"), "{errs:?}");
    }

    #[test]
    fn env_lists_variable_names() {
        assert_eq!(check(r#"tool t(p: text) -> text = command ["env"] { env: ["API_TOKEN", "_X1"] }"#), vec![]);
        let errs = check(r#"tool t(p: text) -> text = command ["env"] { env: ["API_TOKEN=abc"] }"#);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].1.contains("`API_TOKEN=abc` is not the name of an environment variable"), "{errs:?}");
        assert_eq!(errs[0].2, r#""API_TOKEN=abc""#);
    }
}
