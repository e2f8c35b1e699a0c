//! `kubectl bkops`: day-2 commands for the job kinds, from the same binary called as
//! `kubectl-bkops` (a link named so on the PATH makes it a kubectl plugin). It talks to the
//! cluster of the current kubeconfig context with the user's own rights, like kubectl.

mod act;
mod get;
mod logs;
mod runs;
mod text;

use clap::{Parser, Subcommand};
use kube::api::{Api, ApiResource, DynamicObject};

pub use logs::LogsFormat;

use crate::run::kinds::{JOB_KINDS, KindEntry};

/// Day-2 commands for bkops jobs (ProcessJob, Taskflow, AgentJob, ExecuteJob).
#[derive(Parser, Debug)]
#[command(
    name = "kubectl bkops",
    bin_name = "kubectl bkops",
    version,
    after_help = "Targets are KIND/NAME, e.g. processjob/restart-nginx (kind, plural or short \
                  form, any case).\n\nInstall: link the bkops binary as kubectl-bkops on the \
                  PATH, e.g. `ln -s $(command -v bkops) /usr/local/bin/kubectl-bkops`."
)]
pub struct KubectlCli {
    /// The namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (get, runs).
    #[arg(short = 'A', long = "all-namespaces", global = true)]
    pub all_namespaces: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: KubectlCommand,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum KubectlCommand {
    /// List jobs of every kind (or one kind): phase, reason, job id, targets, age.
    Get {
        /// Only this kind.
        kind: Option<String>,
        /// Keep watching: print the table again whenever it changes.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Show one job: its run, failed targets, history and recent Events.
    Describe {
        /// KIND/NAME.
        target: String,
    },
    /// Run the job again (sets the bkops.io/rerun-requested-at annotation).
    Rerun {
        /// KIND/NAME.
        target: String,
    },
    /// Cancel the running job (sets spec.cancel).
    Cancel {
        /// KIND/NAME.
        target: String,
    },
    /// Stop new runs from starting (sets spec.suspend); a running job runs on.
    Suspend {
        /// KIND/NAME.
        target: String,
    },
    /// Let new runs start again (clears spec.suspend).
    Resume {
        /// KIND/NAME.
        target: String,
    },
    /// Settle a run whose submission is Unknown, after checking BlueKing: --adopt ID follows that
    /// job; --not-submitted says nothing was created, and the run is submitted again.
    #[command(group(clap::ArgGroup::new("how").required(true).args(["adopt", "not_submitted"])))]
    Resolve {
        /// KIND/NAME.
        target: String,
        /// The BlueKing job id that is this run's job.
        #[arg(long)]
        adopt: Option<String>,
        /// Nothing was created in BlueKing for this run.
        #[arg(long)]
        not_submitted: bool,
    },
    /// List run records (BkRun): every run that reached BlueKing, kept after its job object is
    /// deleted (newest first); of one job with KIND/NAME.
    Runs {
        /// Only the records of this job (KIND/NAME).
        target: Option<String>,
    },
    /// What each target of the current run (or --run KEY) did, read from BlueKing through the
    /// job's connection: status, reason and the steps' logs of every host, process or flow
    /// node, failures first. Reads the connection's Secret with your own rights.
    Logs {
        /// KIND/NAME.
        #[arg(value_name = "KIND/NAME")]
        object: String,
        /// Only this target: an IP or host id, a process name or id, a flow node's name or id.
        #[arg(long, value_name = "HOST")]
        target: Option<String>,
        /// This run (a key from the current run or status.history) instead of the current one.
        #[arg(long, value_name = "KEY")]
        run: Option<String>,
        /// The BkConnection of a job without spec.connectionRef (the operator's
        /// --default-connection); default: the namespace's only BkConnection.
        #[arg(long, value_name = "NAME")]
        connection: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = LogsFormat::Text)]
        output: LogsFormat,
    },
}

/// Whether the binary was called as the kubectl plugin.
pub fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .is_some_and(|s| s == "kubectl-bkops")
}

/// Runs one command.
pub async fn run(cli: KubectlCli) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster of the current context: {e}"))?;
    let ns = cli
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let scope = Scope {
        client,
        ns,
        all: cli.all_namespaces,
    };
    match cli.command {
        KubectlCommand::Get { kind, watch } => get::get(&scope, kind.as_deref(), watch).await,
        KubectlCommand::Describe { target } => {
            get::describe(&scope, &Target::parse(&target)?).await
        }
        KubectlCommand::Rerun { target } => act::rerun(&scope, &Target::parse(&target)?).await,
        KubectlCommand::Cancel { target } => act::cancel(&scope, &Target::parse(&target)?).await,
        KubectlCommand::Suspend { target } => {
            act::suspend(&scope, &Target::parse(&target)?, true).await
        }
        KubectlCommand::Resume { target } => {
            act::suspend(&scope, &Target::parse(&target)?, false).await
        }
        KubectlCommand::Resolve {
            target,
            adopt,
            not_submitted: _,
        } => act::resolve(&scope, &Target::parse(&target)?, adopt.as_deref()).await,
        KubectlCommand::Runs { target } => {
            let target = target.as_deref().map(Target::parse).transpose()?;
            runs::runs(&scope, target.as_ref()).await
        }
        KubectlCommand::Logs {
            object,
            target,
            run,
            connection,
            output,
        } => {
            let args = logs::LogsArgs {
                target,
                run,
                connection,
                format: output,
            };
            logs::logs(&scope, &Target::parse(&object)?, &args).await
        }
    }
}

/// Where the commands look.
pub(crate) struct Scope {
    client: kube::Client,
    ns: String,
    all: bool,
}

impl Scope {
    /// Where the commands look, for messages: `namespace NS` or `any namespace`.
    fn place(&self) -> String {
        if self.all {
            "any namespace".to_owned()
        } else {
            format!("namespace {}", self.ns)
        }
    }

    fn api(&self, entry: &KindEntry) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &(entry.resource)())
    }

    fn list_api(&self, entry: &KindEntry) -> Api<DynamicObject> {
        if self.all {
            Api::all_with(self.client.clone(), &(entry.resource)())
        } else {
            self.api(entry)
        }
    }
}

/// One job object, as `KIND/NAME` names it.
pub(crate) struct Target {
    entry: &'static KindEntry,
    name: String,
}

impl Target {
    /// `kind/name` as people type it.
    fn label(&self) -> String {
        format!("{}/{}", self.entry.name.to_ascii_lowercase(), self.name)
    }

    fn parse(text: &str) -> anyhow::Result<Target> {
        let (kind, name) = text
            .split_once('/')
            .filter(|(k, n)| !k.is_empty() && !n.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("{text:?}: expected KIND/NAME, e.g. processjob/restart-nginx")
            })?;
        Ok(Target {
            entry: kind_entry(kind)?,
            name: name.to_owned(),
        })
    }
}

/// The kind `text` names: its kind, plural or singular resource name, any case.
fn kind_entry(text: &str) -> anyhow::Result<&'static KindEntry> {
    let want = text.to_ascii_lowercase();
    JOB_KINDS
        .iter()
        .find(|k| {
            let r: ApiResource = (k.resource)();
            want == k.name.to_ascii_lowercase() || want == r.plural
        })
        .ok_or_else(|| {
            let names: Vec<String> = JOB_KINDS
                .iter()
                .map(|k| k.name.to_ascii_lowercase())
                .collect();
            anyhow::anyhow!(
                "{text:?} is not a bkops job kind (one of {})",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_in_any_usual_spelling() {
        for (text, kind) in [
            ("processjob", "ProcessJob"),
            ("ProcessJob", "ProcessJob"),
            ("processjobs", "ProcessJob"),
            ("TASKFLOWS", "Taskflow"),
            ("agentjob", "AgentJob"),
            ("executejobs", "ExecuteJob"),
        ] {
            assert_eq!(kind_entry(text).map(|e| e.name).ok(), Some(kind), "{text}");
        }
        let err = kind_entry("pod")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains(
                "not a bkops job kind (one of processjob, taskflow, agentjob, executejob)"
            ),
            "{err}"
        );
        assert!(Target::parse("processjob").is_err());
        assert!(Target::parse("/x").is_err());
        let t = Target::parse("taskflows/nightly")
            .map(|t| (t.entry.name, t.name))
            .ok();
        assert_eq!(t, Some(("Taskflow", "nightly".to_owned())));
    }
}
