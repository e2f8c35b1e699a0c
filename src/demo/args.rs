//! The command line of `bkops demo`, and the folder where `--keep` leaves the control plane.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::local::stop_command;

/// `bkops demo`: run the examples against the simulator on a local control plane.
#[derive(clap::Args, Debug, Clone)]
#[command(
    about = "Run every example against the BlueKing simulator on a local control plane",
    long_about = "Start a local kube-apiserver and etcd (built once from Debian's sources on \
first use), install the CRDs, start the BlueKing simulator and the operator in this process, \
create the connections `blueking` and `blueking-esb`, apply every job manifest of the examples \
folder and follow them in a live table until every run has ended. One job is given failed \
targets and one waits for a person, whom the demo plays. Ends with a summary that checks each \
resource against what the simulator did and counts the create calls (exactly one per resource)."
)]
pub struct DemoArgs {
    /// Leave everything running after the summary, until Ctrl-C, and the control plane after that
    /// (with a kubeconfig to look with kubectl).
    #[arg(long)]
    pub keep: bool,
    /// Folder of manifests to apply (Secrets and BkConnections in it are skipped: the demo makes
    /// its own connections, with the same names, to the simulator).
    #[arg(long, default_value = "examples")]
    pub examples: PathBuf,
    /// Namespace to run the examples in.
    #[arg(long, default_value = "bkops-demo")]
    pub namespace: String,
    /// How long a simulated job runs, in seconds.
    #[arg(long, default_value_t = 4.0)]
    pub job_seconds: f64,
    /// Give up when the runs have not all ended this many seconds after the examples are applied.
    #[arg(long, default_value_t = 180)]
    pub timeout_seconds: u64,
    /// No colours (none either when `NO_COLOR` is set and not empty, or the output is not a
    /// terminal).
    #[arg(long)]
    pub no_color: bool,
    /// Skip the last act: deleting every job and applying it again, to show that each adopts its
    /// earlier run from its run record instead of running again.
    #[arg(long)]
    pub no_recreate: bool,
    /// Folder of the control plane kept by `--keep`; default `~/.cache/bkops/demo` (or
    /// `$BKOPS_CACHE_DIR/demo`). Emptied at the start of every `--keep` demo.
    #[arg(long, requires = "keep")]
    pub dir: Option<PathBuf>,
}

/// The folder `--keep` uses.
pub(super) fn keep_dir(args: &DemoArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.dir {
        return Ok(dir.clone());
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let cache = var("BKOPS_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache/bkops")))
        .context("neither BKOPS_CACHE_DIR nor HOME is set: pass --dir for --keep")?;
    Ok(cache.join("demo"))
}

/// Empties a kept demo folder from an earlier `--keep`, unless its servers still run.
pub(super) fn reset_keep_dir(dir: &Path) -> anyhow::Result<()> {
    let entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    if entries.is_empty() {
        return Ok(());
    }
    if !dir.join("kubeconfig").exists() && !dir.join("etcd.log").exists() {
        bail!(
            "{} is not empty and does not look like a bkops demo folder; pass another --dir",
            dir.display()
        );
    }
    let alive: Vec<String> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pid"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|pid| pid.trim().to_owned())
        .filter(|pid| !pid.is_empty() && Path::new("/proc").join(pid).exists())
        .collect();
    if !alive.is_empty() {
        bail!(
            "the control plane of an earlier `bkops demo --keep` is still running (pids {}): \
             stop it with `{}`, or pass --dir for another folder",
            alive.join(", "),
            stop_command(dir)
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    #[test]
    fn args_parse() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["demo"]).unwrap();
        assert!(!cli.demo.keep);
        assert_eq!(cli.demo.examples, PathBuf::from("examples"));
        assert_eq!(cli.demo.namespace, "bkops-demo");
        assert_eq!(cli.demo.timeout_seconds, 180);
        assert!(Cli::try_parse_from(["demo", "--dir", "/x"]).is_err());
        let cli =
            Cli::try_parse_from(["demo", "--keep", "--dir", "/x", "--job-seconds", "1"]).unwrap();
        assert_eq!(keep_dir(&cli.demo).unwrap(), PathBuf::from("/x"));
    }

    #[test]
    fn a_kept_folder_is_only_emptied_when_it_is_a_demo_one() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("demo");
        reset_keep_dir(&kept).unwrap(); // missing: nothing to do
        std::fs::create_dir(&kept).unwrap();
        std::fs::write(kept.join("notes.txt"), "mine").unwrap();
        assert!(reset_keep_dir(&kept).is_err());
        std::fs::write(kept.join("kubeconfig"), "").unwrap();
        std::fs::write(kept.join("etcd.pid"), format!("{}\n", std::process::id())).unwrap();
        let err = reset_keep_dir(&kept).unwrap_err();
        assert!(err.to_string().contains("still running"), "{err}");
        std::fs::write(kept.join("etcd.pid"), "999999999\n").unwrap();
        reset_keep_dir(&kept).unwrap();
        assert!(!kept.exists());
    }
}
