//! The `bkops` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bkops::crdgen::{self, CrdKind};

/// bkops: declarative BlueKing operations (GSEKit, BKFlow, NodeMan, JOB) on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "bkops", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator: watch the job kinds, submit each run exactly once, report status.
    Run(bkops::cli::RunArgs),
    /// Run every example against the BlueKing simulator on a local control plane, in a live table.
    Demo(bkops::demo::DemoArgs),
    /// Serve the BlueKing simulator (GSEKit, BKFlow, NodeMan, JOB; gateway and ESB paths).
    Sim(bkops::sim::SimArgs),
    /// Load benchmark: N job objects against a local kube-apiserver and the simulator, with
    /// the operator as a separate process; prints the report and judges the targets.
    Bench(bkops::bench::BenchArgs),
    /// The bench's bare controller, the reference the operator is judged against (started by
    /// `bkops bench`).
    #[command(hide = true)]
    BenchBare(bkops::bench::bare::BareArgs),
    /// Print the CustomResourceDefinitions as YAML (all kinds, or one with --kind), or write
    /// one file per kind with --out-dir.
    Crds {
        /// Only this kind.
        #[arg(long, value_enum)]
        kind: Option<CrdKind>,
        /// Write one file per kind into this folder instead of printing.
        #[arg(long, conflicts_with = "kind")]
        out_dir: Option<PathBuf>,
    },
    /// Show what job manifests would do before they are applied: every problem, with its
    /// field path, and the BlueKing request each would send (never sent; no cluster needed).
    Plan(bkops::plan::PlanArgs),
    /// Write one JSON Schema per kind into a folder, for kubeconform and editors: use
    /// `kubeconform -schema-location default -schema-location 'DIR/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'`.
    /// The CRDs' CEL rules are not JSON Schema and are not included.
    Schema {
        /// The folder to write into (created if missing).
        #[arg(long)]
        out_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    if bkops::kubectl::invoked_as_plugin() {
        return kubectl(bkops::kubectl::KubectlCli::parse());
    }
    let cli = Cli::parse();
    if let Command::Plan(args) = cli.command {
        return plan(args);
    }
    let result = match cli.command {
        Command::Crds { kind, out_dir } => crds(kind, out_dir),
        Command::Schema { out_dir } => schema(&out_dir),
        command => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(async {
                match command {
                    Command::Run(args) => bkops::cli::run(args).await,
                    Command::Sim(args) => bkops::sim::run(args).await,
                    Command::Bench(args) => bkops::bench::run(args).await,
                    Command::BenchBare(args) => bkops::bench::bare::run(args).await,
                    Command::Demo(args) => bkops::demo::run(args).await,
                    Command::Crds { .. } | Command::Schema { .. } | Command::Plan(_) => Ok(()),
                }
            }),
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our stdout went away (`bkops crds | head -1`): it had what it wanted.
        // Exit 0 rather than the shells' 141 (128 + SIGPIPE), as ripgrep does: stopping early was
        // the reader's choice, not a failure of bkops, and `set -o pipefail` scripts keep working.
        Err(e) if bkops::output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            bkops::errln!("bkops: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `kubectl bkops ...` (the binary called as `kubectl-bkops`).
fn kubectl(cli: bkops::kubectl::KubectlCli) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(bkops::kubectl::run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if bkops::output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            bkops::errln!("kubectl bkops: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `bkops plan`: exit 0 when every job manifest is valid, 1 when any is not, 2 when the input
/// cannot be read.
fn plan(args: bkops::plan::PlanArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(bkops::plan::run(args)));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) if bkops::output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            bkops::errln!("bkops plan: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn crds(kind: Option<CrdKind>, out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(dir) = out_dir {
        for path in crdgen::write_dir(&dir)? {
            bkops::errln!("wrote {}", path.display());
        }
    } else {
        let kinds = kind
            .map(|k| vec![k])
            .unwrap_or_else(|| CrdKind::ALL.to_vec());
        bkops::out!("{}", crdgen::render(&kinds)?)?;
    }
    Ok(())
}

fn schema(out_dir: &std::path::Path) -> anyhow::Result<()> {
    for path in bkops::schema::write_dir(out_dir)? {
        bkops::errln!("wrote {}", path.display());
    }
    Ok(())
}
