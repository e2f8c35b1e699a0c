//! What the commands print: stdout whose reader may go away, stderr that never fails a command,
//! and whether to colour.
//!
//! `println!` panics when stdout is a pipe its reader has closed (`bkops crds | head -1`): Rust
//! ignores SIGPIPE, so the write fails with `BrokenPipe`, and restoring the signal's default
//! would take `unsafe`. So the commands print with [`outln!`](crate::outln) and
//! [`out!`](crate::out), which turn `BrokenPipe` into [`StdoutError::Closed`]; the command stops
//! there, and `main` ends the process quietly (see [`is_stdout_closed`]).

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};

/// A failed write to stdout.
#[derive(Debug, thiserror::Error)]
pub enum StdoutError {
    /// The reader closed the pipe: nobody wants the rest, which is not an error of the command.
    #[error("stdout was closed by its reader")]
    Closed,
    /// Anything else (a full disk, ...).
    #[error("writing to stdout")]
    Io(#[source] std::io::Error),
}

/// Writes to stdout and flushes, so that a closed pipe is seen at this write.
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => StdoutError::Closed,
            _ => StdoutError::Io(e),
        })
}

/// Writes to stderr, ignoring failure: a diagnostic that cannot be shown must not stop the
/// command (unlike `eprintln!`, which panics when stderr is closed).
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Whether `error` (or one of its causes) says stdout was closed by its reader.
pub fn is_stdout_closed(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|e| matches!(e.downcast_ref::<StdoutError>(), Some(StdoutError::Closed)))
}

/// Whether to colour a stream: only a terminal, and not when `NO_COLOR` holds anything
/// (no-color.org: set and not empty).
pub fn should_color(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// [`should_color`] for `stream`, with this process's `NO_COLOR`.
pub fn color_for(stream: &impl IsTerminal) -> bool {
    should_color(
        stream.is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// Like `print!`, to stdout; evaluates to `Result<(), StdoutError>`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// Like `println!`, to stdout; evaluates to `Result<(), StdoutError>`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Like `eprintln!`, but a closed or broken stderr is ignored rather than a panic.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = |v: &'static str| Some(OsStr::new(v));
        for (tty, no_color, want) in [
            (true, None, true),
            // no-color.org: an empty NO_COLOR is as good as none.
            (true, set(""), true),
            (true, set("1"), false),
            (true, set("0"), false),
            (true, set("false"), false),
            (false, None, false),
            (false, set(""), false),
            (false, set("1"), false),
        ] {
            assert_eq!(should_color(tty, no_color), want, "{tty} {no_color:?}");
        }
    }

    #[test]
    fn only_a_closed_stdout_is_quiet() {
        let closed = anyhow::Error::from(StdoutError::Closed).context("printing the report");
        assert!(is_stdout_closed(&closed));
        let full = anyhow::Error::from(StdoutError::Io(std::io::Error::other("disk full")));
        assert!(!is_stdout_closed(&full));
        // A broken pipe elsewhere (a child's stdin, a socket) is a real error.
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(!is_stdout_closed(&pipe));
    }
}
