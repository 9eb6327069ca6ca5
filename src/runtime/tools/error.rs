//! Why a tool call failed, and how text from a server or program is shown in those messages.

/// Why a tool call failed. Each variant names the tool.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Occurs when every attempt ran out of time.
    #[error("tool `{tool}` timed out after {timeout_ms} ms ({attempts} attempt(s))")]
    Timeout {
        /// The tool.
        tool: String,
        /// The per-attempt timeout.
        timeout_ms: u64,
        /// Attempts made.
        attempts: u32,
    },
    /// Occurs when the endpoint cannot be reached.
    #[error("tool `{tool}` cannot reach `{url}`: {reason}")]
    Unreachable {
        /// The tool.
        tool: String,
        /// The URL tried.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// Occurs when the endpoint answers with an error status.
    #[error("tool `{tool}` got HTTP {status}: {body}")]
    Status {
        /// The tool.
        tool: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// Occurs when the response or output exceeds `max_bytes`.
    #[error("tool `{tool}` returned more than {limit} bytes")]
    TooLarge {
        /// The tool.
        tool: String,
        /// The limit.
        limit: u64,
    },
    /// Occurs when an HTTP endpoint redirects to another origin, which loopc does not follow:
    /// the tool's headers (API keys) must not reach a server the `.loop` text did not name.
    #[error("tool `{tool}` was redirected to `{location}`, another origin; loopc follows redirects only within the tool's scheme, host and port")]
    Redirect {
        /// The tool.
        tool: String,
        /// Where the endpoint pointed (shortened).
        location: String,
    },
    /// Occurs when a command cannot start.
    #[error("tool `{tool}` cannot run `{program}`: {reason}")]
    Spawn {
        /// The tool.
        tool: String,
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// Occurs when a command exits unsuccessfully.
    #[error("tool `{tool}` exited with {status}: {stderr}")]
    Exit {
        /// The tool.
        tool: String,
        /// The exit status.
        status: String,
        /// The start of its standard error.
        stderr: String,
    },
    /// Occurs when the output is not a value of the declared type.
    #[error("tool `{tool}` returned a value that is not {expected}: {reason}")]
    Output {
        /// The tool.
        tool: String,
        /// The declared type.
        expected: String,
        /// What was wrong.
        reason: String,
    },
    /// Occurs when an argument cannot be placed in the request or command without changing
    /// what it does (a `..` path segment, a line break in a header, an option where a value
    /// belongs, a NUL byte), or the tool's declaration is unsafe.
    #[error("tool `{tool}`: {reason}")]
    Argument {
        /// The tool.
        tool: String,
        /// What was wrong.
        reason: String,
    },
}

/// At most `max` characters of `text`, with control characters escaped, for error messages:
/// text from a server or a program must not drive the terminal it is printed on.
pub(super) fn snippet(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().take(max) {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snippet;

    #[test]
    fn snippets_escape_terminal_controls_and_mark_what_was_cut() {
        assert_eq!(snippet("ok\u{1b}[2Jgone", 100), "ok\\u{1b}[2Jgone");
        assert_eq!(snippet("abcdef", 3), "abc…");
        assert_eq!(snippet("line\nnext", 100), "line\nnext");
    }
}
