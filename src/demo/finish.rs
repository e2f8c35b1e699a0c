//! The end of a demo: how to look further (with `--keep`), then the operator, the simulator and
//! (unless kept) the control plane stopped.

use std::path::Path;
use std::time::Duration;

use super::Demo;
use crate::local::{ControlPlane, stop_command};

impl Demo {
    /// Shows how to look further (and stays up until Ctrl-C with `--keep`), then stops what runs.
    /// A closed stdout (`bkops demo | head`) skips the waiting: nobody reads how to look further.
    pub(super) async fn finish(
        mut self,
        mut result: anyhow::Result<()>,
        log: &Path,
    ) -> anyhow::Result<()> {
        let closed = |result: &anyhow::Result<()>| {
            result.as_ref().is_err_and(crate::output::is_stdout_closed)
        };
        if self.args.keep
            && !self.stop.is_cancelled()
            && !closed(&result)
            && let Some(cp) = &self.cp
        {
            match self.look_further(cp, log) {
                Ok(()) => self.stop.cancelled().await,
                Err(e) => result = result.and(Err(e.into())),
            }
        }
        if let Some((token, task)) = self.operator.take() {
            token.cancel();
            match tokio::time::timeout(Duration::from_secs(20), task).await {
                Ok(Ok(Err(e))) => tracing::warn!("the operator ended with an error: {e:#}"),
                Ok(Err(e)) => tracing::warn!("the operator task failed: {e}"),
                Err(_) => tracing::warn!("the operator did not stop in 20 s"),
                Ok(Ok(Ok(()))) => {}
            }
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
        if let Some(cp) = self.cp.take() {
            if self.args.keep {
                let kubeconfig = cp.kubeconfig_path().to_path_buf();
                let dir = cp.detach();
                // The control plane is left running: say how to stop it, on stderr when stdout
                // is closed.
                let how = format!(
                    "\nThe simulator and the operator have stopped; the control plane still runs:\n  \
                     export KUBECONFIG={}\n  stop it with: {}",
                    kubeconfig.display(),
                    stop_command(&dir)
                );
                if let Err(e) = crate::outln!("{how}") {
                    crate::errln!("{how}");
                    result = result.and(Err(e.into()));
                }
            } else if let Err(e) = cp.stop().await {
                crate::errln!("bkops demo: stopping the control plane: {e}");
            }
        }
        if result.is_err() && !closed(&result) {
            crate::errln!("bkops demo: the operator's log is in {}", log.display());
        } else if !self.args.keep {
            let _ = std::fs::remove_file(log);
            if result.is_ok() {
                result = crate::outln!(
                    "Everything has stopped. `bkops demo --keep` leaves it running, to look with kubectl."
                )
                .map_err(Into::into);
            }
        }
        result
    }

    fn look_further(
        &self,
        cp: &ControlPlane,
        log: &Path,
    ) -> Result<(), crate::output::StdoutError> {
        let ns = &self.args.namespace;
        let kubectl = cp
            .kubectl_path()
            .map(|k| k.display().to_string())
            .unwrap_or_else(|| "kubectl".to_owned());
        let base = self
            .sim
            .as_ref()
            .map(|s| s.base_url().to_string())
            .unwrap_or_default();
        crate::outln!(
            "\nThe demo keeps running: this process serves the simulator and runs the operator, so \
             leave it in the foreground and use another terminal:\n\
             \n  export KUBECONFIG={kubeconfig}\
             \n  {kubectl} get bkops -n {ns}\
             \n  {kubectl} describe agentjobs -n {ns}\
             \n  {kubectl} get events -n {ns}\
             \n  {kubectl} wait --for=condition=Ready executejob --all -n {ns}\
             \n  curl -s {base}_sim/jobs          # the simulator's jobs\
             \n\nThe simulator: {base}  The operator's log: {log}\n\
             Ctrl-C stops the simulator and the operator; the control plane keeps running until \
             `{stop}`.",
            kubeconfig = cp.kubeconfig_path().display(),
            log = log.display(),
            stop = stop_command(cp.dir()),
        )
    }
}
