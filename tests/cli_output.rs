//! The binary's output as a pipeline or a file sees it: a reader that stops early
//! (`bkops crds | head -1`) ends bkops quietly, with status 0 and nothing on stderr, and logs that
//! go to a file are plain text.

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

#[test]
fn logs_written_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    // A cluster that is never reached: the operator logs where it serves /metrics before it
    // needs one.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
         clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n\
         contexts: [{name: c, context: {cluster: c, user: u}}]\n\
         users: [{name: u, user: {token: t}}]\n",
    )
    .expect("writing the kubeconfig");
    let log_path = dir.path().join("operator.log");
    let log = std::fs::File::create(&log_path).expect("creating the log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bkops"))
        .arg("run")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--metrics-addr", "127.0.0.1:0", "--leader-elect", "false"])
        .args(["--log-level", "info", "--log-format", "text"])
        // Colour must be off because the log is a file, whatever NO_COLOR says.
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("the bkops binary runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("serving /metrics") && text.contains('\n') {
            break text;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            panic!("no log line from `bkops run` in 30 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !text.contains("\x1b["),
        "colour codes in a log file:\n{text:?}"
    );
    assert!(text.contains(" INFO "), "a plain text log line: {text}");
}
