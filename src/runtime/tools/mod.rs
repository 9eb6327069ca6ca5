//! Runs tools: HTTP requests and local commands, each with a timeout and a size limit, built
//! so that a call's arguments fill their slots and nothing else. A value can't change where a
//! request goes (URL values are encoded into their path segment or query and the result is
//! checked against the template's origin and path; redirects leave neither the origin nor
//! carry headers elsewhere), can't add body fields, and can't become a command's program, an
//! option or code; a command sees only the environment variables its tool names, and a timeout
//! kills its whole process group. The result is read as the tool's declared type.

mod body;
mod call;
mod command;
mod error;
mod http;
mod url;

pub use self::call::{call, ToolClient};
pub use self::error::ToolError;
