//! The binary's output as a pipeline sees it: a reader that stops early (`bkops crds | head -1`)
//! ends bkops quietly, with status 0 and nothing on stderr.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Starts `bkops args` with stdout and stderr piped.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bkops"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bkops binary runs")
}

/// Reads the first line of the child's stdout, then closes the pipe.
fn read_one_line_and_close(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reading the first line");
    line
}

/// The child's exit status, waiting at most `timeout`; `None` if it still runs.
fn wait_for(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for bkops") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts a quiet end: status 0 and an empty stderr (so no panic message either).
fn assert_quiet(mut child: Child, status: ExitStatus, what: &str) {
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("reading stderr");
    assert!(
        status.success(),
        "{what}: {status} after its reader went away; stderr:\n{stderr}"
    );
    assert!(
        stderr.is_empty(),
        "{what}: printed to stderr after its reader went away:\n{stderr}"
    );
}

#[test]
fn crds_end_quietly_when_the_reader_stops_after_one_line() {
    // All CRDs are ~100 KB, more than a pipe holds: bkops is still writing when the pipe closes.
    let mut child = spawn(&["crds"]);
    let line = read_one_line_and_close(&mut child);
    assert_eq!(line, "---\n");
    let status = wait_for(&mut child, Duration::from_secs(30)).expect("bkops crds ends");
    assert_quiet(child, status, "bkops crds");
}

#[test]
fn sim_ends_quietly_when_the_reader_stops_after_one_line() {
    let mut child = spawn(&["sim", "--listen", "127.0.0.1:0"]);
    let line = read_one_line_and_close(&mut child);
    assert!(
        line.starts_with("BlueKing simulator listening on http://127.0.0.1:"),
        "{line}"
    );
    // Either a line of the announcement meets the closed pipe and the simulator stops at once,
    // or the announcement fitted in the pipe before it closed, and "shutting down" meets it after
    // SIGTERM.
    let status = match wait_for(&mut child, Duration::from_secs(2)) {
        Some(status) => status,
        None => {
            let kill = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(kill.success(), "kill -TERM: {kill}");
            wait_for(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
                let _ = child.kill();
                panic!("bkops sim did not stop on SIGTERM")
            })
        }
    };
    assert_quiet(child, status, "bkops sim");
}
