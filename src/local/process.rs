//! Child processes that cannot outlive us.
//!
//! Each server runs under a small `sh` supervisor whose stdin is a pipe from this process. Rust
//! never runs destructors of statics (the tests keep their control plane in one) and cannot run any
//! on SIGKILL, but the kernel always closes the pipe when this process ends: the supervisor then
//! reads end-of-file and stops the server. That needs no `unsafe` (no `prctl`/`pre_exec`). The
//! supervisor leads its own process group, so a last-resort `kill -KILL -<group>` reaches the server
//! too.
//!
//! What the supervisor reads decides what it does:
//! - `stop`: we stop the server ourselves (SIGTERM, SIGKILL after a grace period).
//! - `detach`: leave the server running (`bkops demo --keep`).
//! - end-of-file with no line: we died; stop the server and remove `$BKOPS_CLEANUP_DIR` if set,
//!   since our own cleanup will never run.
//!
//! With `$BKOPS_STOP_AFTER` (another server's pid file) it stops its server only once that one has
//! gone: kube-apiserver stops in about 2 s while etcd runs, but hangs until killed once etcd is gone.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::LocalError;

/// Seconds between SIGTERM and SIGKILL; kube-apiserver drains requests for a moment on SIGTERM.
const GRACE_SECONDS: u64 = 10;

const SUPERVISOR: &str = r#"
exec 3<&0
"$@" </dev/null 3<&- &
child=$!
[ -n "${BKOPS_PIDFILE:-}" ] && echo "$child" >"$BKOPS_PIDFILE"
(
  if read -r line <&3; then
    [ "$line" = detach ] && exit 0
    cleanup=
  else
    cleanup=${BKOPS_CLEANUP_DIR:-}
  fi
  if [ -n "${BKOPS_STOP_AFTER:-}" ]; then
    first=$(cat "$BKOPS_STOP_AFTER" 2>/dev/null)
    waited=0
    while [ -n "$first" ] && kill -0 "$first" 2>/dev/null && [ "$waited" -lt $((GRACE * 10 + 10)) ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
  fi
  kill -TERM "$child" 2>/dev/null
  waited=0
  while kill -0 "$child" 2>/dev/null; do
    if [ "$waited" -ge $((GRACE * 10)) ]; then kill -KILL "$child" 2>/dev/null; fi
    sleep 0.1
    waited=$((waited + 1))
  done
  if [ -n "$cleanup" ]; then rm -rf "$cleanup"; fi
) </dev/null &
wait "$child"
"#;

/// A server process under a supervisor; stopped (blocking) when dropped.
#[derive(Debug)]
pub(crate) struct Supervised {
    name: &'static str,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    pid_file: PathBuf,
}

impl Supervised {
    /// Starts `program args` with stdout and stderr written to `log` (emptied first, so a startup
    /// error quotes this run only). When this process dies
    /// without stopping it, the supervisor removes `cleanup_dir` once the server is gone. When told
    /// to stop, it first waits (up to the grace period) for the server `stop_after` names to end.
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
        cleanup_dir: Option<&Path>,
        stop_after: Option<&Path>,
    ) -> Result<Self, LocalError> {
        let out = File::create(&log)
            .map_err(|e| LocalError::io(format!("opening {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| LocalError::io(format!("opening {}", log.display()), e))?;
        let pid_file = pid_file(&log);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg(format!("bkops-{name}"))
            .arg(program)
            .args(args)
            .env("GRACE", GRACE_SECONDS.to_string())
            .env("BKOPS_PIDFILE", &pid_file)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            // Out of the terminal's process group: Ctrl-C reaches us, and we stop the servers.
            .process_group(0);
        match stop_after {
            Some(pid_file) => command.env("BKOPS_STOP_AFTER", pid_file),
            None => command.env_remove("BKOPS_STOP_AFTER"),
        };
        match cleanup_dir {
            Some(dir) => command.env("BKOPS_CLEANUP_DIR", dir),
            None => command.env_remove("BKOPS_CLEANUP_DIR"),
        };
        let mut child = command.spawn().map_err(|source| LocalError::MissingTool {
            program: "sh",
            purpose: "supervise the control-plane processes",
            source,
        })?;
        let stdin = child.stdin.take();
        Ok(Self {
            name,
            child: Some(child),
            stdin,
            log,
            pid_file,
        })
    }

    /// The server's name, as used in messages.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The log file holding the server's stdout and stderr.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The server's process id, once the supervisor has written it.
    pub(crate) fn server_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// The server's exit status if it has ended (the supervisor exits with it).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Asks the supervisor to stop the server; [`Supervised::wait_blocking`] or
    /// [`Supervised::wait`] then reaps it.
    pub(crate) fn request_stop(&mut self) {
        self.send("stop");
    }

    /// Leaves the server running after we end; returns its process id.
    pub(crate) fn detach(mut self) -> Option<u32> {
        self.send("detach");
        // The supervisor lives on as the server's parent; dropping `Child` does not kill it.
        self.child = None;
        self.server_pid()
    }

    fn send(&mut self, line: &str) {
        if let Some(mut stdin) = self.stdin.take() {
            // A supervisor that already exited cannot read this, and needs not.
            let _ = writeln!(stdin, "{line}");
        }
    }

    /// Waits for the supervisor to exit, polling so it never blocks a runtime for long; kills the
    /// whole group if it takes longer than the grace period.
    pub(crate) async fn wait(&mut self) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(GRACE_SECONDS + 5);
        loop {
            if let Some(status) = self.reap_or_kill(deadline) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Like [`Supervised::wait`], for `Drop`.
    pub(crate) fn wait_blocking(&mut self) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(GRACE_SECONDS + 5);
        loop {
            if let Some(status) = self.reap_or_kill(deadline) {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Some(status)` once done (`Some(None)` when there is nothing to wait for).
    #[allow(clippy::option_option)] // "done, with no status" differs from "not done yet"
    fn reap_or_kill(&mut self, deadline: Instant) -> Option<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Some(None);
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(Some(status))
            }
            Ok(None) if Instant::now() < deadline => None,
            // Past the deadline, or unable to wait: take the whole group down.
            _ => {
                let group = child.id();
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{group}")])
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let status = child.wait().ok();
                self.child = None;
                Some(status)
            }
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.request_stop();
            self.wait_blocking();
        }
    }
}

/// Where the supervisor of the server logging to `log` writes the server's pid.
pub(crate) fn pid_file(log: &Path) -> PathBuf {
    log.with_extension("pid")
}
