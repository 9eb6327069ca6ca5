//! `loopc lsp`: the language server on standard input and output. Nothing else may write to
//! standard output while it runs: that stream is the protocol.

use loopc::lsp::ServerError;

use super::args::LspArgs;
use super::Outcome;

/// Runs `loopc lsp` until the editor shuts it down.
pub fn run(_args: &LspArgs) -> anyhow::Result<Outcome> {
    let (connection, io_threads) = lsp_server::Connection::stdio();
    match loopc::lsp::serve(connection) {
        Ok(()) => {
            io_threads.join()?;
            Ok(Outcome::Success)
        }
        // The editor went away without `shutdown`: the protocol says exit 1.
        Err(ServerError::Disconnected) => {
            eprintln!("loopc lsp: the editor closed the connection without `shutdown`");
            Ok(Outcome::Failure)
        }
        Err(e) => Err(e.into()),
    }
}
