//! Command tools: a fixed program run with an argument vector (never a shell), in its own
//! process group, with only an allowlisted environment.
//!
//! Each argument is checked against [`arg_rule`]: a value never becomes the program, an option
//! or code, and a value that starts an argument before `--` may not start with `-`. Standard
//! input is written while standard output and error are read, so big inputs and outputs can't
//! deadlock; output past `max_bytes` fails the call. When the call ends for any reason (done,
//! timed out, too much output, cancelled), whatever is left of its process group is killed.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::call::arg;
use super::error::{snippet, ToolError};
use crate::graph::{arg_rule, ArgRule, ToolSpec, ToolTemplate};

/// Variables every command gets from loopc's environment, when set: enough to find programs
/// and to read and write text in the user's locale. `HOME` is not among them (a program that
/// needs it names it in `env`): it leads to credentials and configuration.
const BASE_ENV: [&str; 3] = ["PATH", "LANG", "LC_ALL"];

/// The bytes of standard error kept for the message of a failed command; the rest is read and dropped.
const STDERR_BYTES: usize = 4096;

/// Runs the command `spec` describes and returns its standard output.
pub(super) async fn run(
    spec: &ToolSpec,
    argv: &[ToolTemplate],
    stdin: Option<&ToolTemplate>,
    env: &[String],
    args: &Map<String, Value>,
) -> Result<String, ToolError> {
    let tool = spec.name.clone();
    let refuse = |reason: String| ToolError::Argument { tool: tool.clone(), reason };
    let argv = arguments(argv, args).map_err(refuse)?;
    let Some((program, rest)) = argv.split_first() else {
        return Err(refuse("the argument list is empty".into()));
    };
    let spawn_error = |reason: String| ToolError::Spawn { tool: tool.clone(), program: program.clone(), reason };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest)
        .env_clear()
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that everything it starts can be killed with it.
        .process_group(0)
        .kill_on_drop(true);
    for name in BASE_ENV.iter().copied().chain(env.iter().map(String::as_str)) {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    let mut child = cmd.spawn().map_err(|e| spawn_error(e.to_string()))?;
    // Declared after `child`, so dropped before it: the group is killed before tokio reaps the leader.
    let group = child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()).map(ProcessGroup);
    let input = stdin.map(|t| t.render(|p| arg(args, p)));
    let (stdin_pipe, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let limit = spec.options.max_bytes;
    let exchange = async {
        let write = async {
            if let (Some(text), Some(mut pipe)) = (input, stdin_pipe) {
                // A program that exits without reading all its input is not a failed call.
                let _ = pipe.write_all(text.as_bytes()).await;
            }
            Ok(())
        };
        let (_, out, err) = tokio::try_join!(write, read_bounded(stdout, limit), read_kept(stderr))?;
        let status = child.wait().await.map_err(|e| Failure::Io(e.to_string()))?;
        Ok::<_, Failure>((out, err, status))
    };
    let outcome = tokio::time::timeout(Duration::from_millis(spec.options.timeout_ms), exchange).await;
    // Whatever the outcome, nothing the call started outlives it.
    drop(group);
    match outcome {
        Err(_) => Err(ToolError::Timeout { tool, timeout_ms: spec.options.timeout_ms, attempts: 1 }),
        Ok(Err(Failure::TooLarge)) => Err(ToolError::TooLarge { tool, limit }),
        Ok(Err(Failure::Io(reason))) => Err(spawn_error(reason)),
        Ok(Ok((_, err, status))) if !status.success() => {
            Err(ToolError::Exit { tool, status: status.to_string(), stderr: snippet(&String::from_utf8_lossy(&err), 200) })
        }
        Ok(Ok((out, _, _))) => Ok(String::from_utf8_lossy(&out).into_owned()),
    }
}

/// The argument vector with values filled in, each checked against its argument's rule.
fn arguments(argv: &[ToolTemplate], args: &Map<String, Value>) -> Result<Vec<String>, String> {
    let program = argv.first().and_then(ToolTemplate::literal).unwrap_or_default();
    let mut out = Vec::with_capacity(argv.len());
    for (i, t) in argv.iter().enumerate() {
        let text = t.render(|p| arg(args, p));
        let param = t.params().next().unwrap_or_default();
        match arg_rule(argv, i) {
            ArgRule::Unsafe(reason) => return Err(reason),
            ArgRule::NoLeadingDash if text.starts_with('-') => {
                return Err(format!(
                    "the value `{}` of `{{{param}}}` starts with `-`, so `{program}` could read it as an option; put `--` before positional placeholders in the tool's command",
                    snippet(&text, 60)
                ))
            }
            _ => {}
        }
        if text.contains('\0') {
            return Err(format!("the value of `{{{param}}}` contains a NUL byte, which no program argument can hold"));
        }
        out.push(text);
    }
    Ok(out)
}

/// Why the exchange with a command stopped early.
enum Failure {
    TooLarge,
    Io(String),
}

/// Reads all of `pipe`, failing as soon as it passes `limit` bytes.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, limit: u64) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    let Some(mut pipe) = pipe else { return Ok(out) };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut buf).await.map_err(|e| Failure::Io(e.to_string()))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() as u64 + n as u64 > limit {
            return Err(Failure::TooLarge);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Reads all of `pipe`, keeping the first [`STDERR_BYTES`]. Reading on keeps a chatty program
/// from blocking on a full pipe.
async fn read_kept(pipe: Option<impl AsyncRead + Unpin>) -> Result<Vec<u8>, Failure> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else { return Ok(kept) };
    let mut buf = vec![0u8; 8192];
    // A read error on standard error loses only the message, never the call.
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = STDERR_BYTES.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buf[..room]);
    }
    Ok(kept)
}

/// A command's process group, killed when this is dropped: on success, timeout, error, or when
/// the caller drops the call (a step timeout).
struct ProcessGroup(libc::pid_t);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `killpg` takes two integers and touches no memory of ours. The group id is
        // the leader's pid, which can't be reused while the leader is unreaped (on timeouts and
        // errors it is, since we never waited) or while any member of the group lives. After a
        // normal exit the group may be empty and its id free; Linux hands pids out cyclically,
        // so one is not reused in the moment between reaping and this call. ESRCH (nothing left)
        // is the common result and is ignored.
        unsafe {
            libc::killpg(self.0, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The checked argument vector for `argv` with `p` set to `value`.
    fn check(argv: &[&str], value: &str) -> Result<Vec<String>, String> {
        let argv: Vec<ToolTemplate> = argv.iter().map(|a| ToolTemplate::parse(a).unwrap()).collect();
        let args = json!({ "p": value }).as_object().cloned().unwrap_or_default();
        arguments(&argv, &args)
    }

    #[test]
    fn a_value_starting_an_argument_may_not_start_an_option() {
        let err = check(&["sort", "{p}"], "--output=/tmp/pwned").unwrap_err();
        assert!(err.contains("starts with `-`, so `sort` could read it as an option"), "{err}");
        assert_eq!(check(&["sort", "{p}"], "file.txt").unwrap(), ["sort", "file.txt"]);
    }

    #[test]
    fn after_the_end_of_options_or_in_name_value_form_any_value_is_data() {
        assert_eq!(check(&["sort", "--", "{p}"], "--output=x").unwrap(), ["sort", "--", "--output=x"]);
        assert_eq!(check(&["grep", "--regexp={p}", "f"], "-v").unwrap(), ["grep", "--regexp=-v", "f"]);
        assert_eq!(check(&["cat", "/data/{p}"], "-n").unwrap(), ["cat", "/data/-n"]);
    }

    #[test]
    fn nul_bytes_are_refused_instead_of_reaching_exec() {
        assert!(check(&["echo", "x{p}"], "a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn unsafe_placements_are_refused_at_run_time_too() {
        assert!(check(&["{p}"], "rm").is_err());
        assert!(check(&["sort", "-{p}"], "o/tmp/x").is_err());
        assert!(check(&["sh", "-c", "echo {p}"], "hi; rm -rf ~").is_err());
    }
}
