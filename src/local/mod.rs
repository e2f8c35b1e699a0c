//! A local Kubernetes control plane: a real `etcd` and `kube-apiserver` on loopback.
//!
//! Tests and `bkops demo` run the operator against this, not a mock. Nothing else runs:
//! no controller-manager, no scheduler, no kubelet. So pods never start, and a deleted namespace stays
//! `Terminating` (the namespace controller lives in the controller-manager).
//!
//! - [`Binaries`] finds `kube-apiserver` and `etcd`: `KUBEBUILDER_ASSETS` first (the envtest
//!   convention), else the cache folder, which [`Binaries::provision`] fills once by running
//!   `hack/provision-control-plane.sh` (embedded in the library) under a file lock.
//! - [`ControlPlane`] starts both on free loopback ports, waits until the API server is ready, writes
//!   a kubeconfig and hands out admin or impersonating [`kube::Client`]s.
//! - [`install_crds`] installs bkops's CRDs and waits until they are served.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bkops::local::LocalError> {
//! use bkops::local::{ControlPlane, ControlPlaneOptions};
//!
//! let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
//! let client = cp.client()?;
//! println!("kubectl --kubeconfig {} get ns", cp.kubeconfig_path().display());
//! # drop(client);
//! cp.stop().await?;
//! # Ok(())
//! # }
//! ```

mod binaries;
mod control_plane;
mod crds;
mod process;

use std::path::PathBuf;

pub use binaries::{Binaries, K8S_VERSION, Locator};
pub use control_plane::{ControlPlane, ControlPlaneOptions, stop_command};
pub use crds::install_crds;

/// Why the local control plane could not be found, provisioned, started or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The binaries are not where they were looked for, and provisioning did not (or may not) run.
    #[error("control plane binaries not found: {detail}. {hint}")]
    BinariesNotFound {
        /// What was looked for, where.
        detail: String,
        /// How to fix it.
        hint: String,
    },

    /// The provisioning script ran and failed.
    #[error(
        "provisioning the control plane failed ({status}); last output:\n{output}\n\
         Set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd, or run \
         `hack/provision-control-plane.sh` as root on Debian bookworm"
    )]
    Provision {
        /// The script's exit status.
        status: String,
        /// The tail of its output.
        output: String,
    },

    /// A helper program the control plane needs is not installed.
    #[error(
        "`{program}` is needed to {purpose} but could not be run ({source}); install it (Debian: apt-get install {program})"
    )]
    MissingTool {
        /// The program's name.
        program: &'static str,
        /// What it is needed for.
        purpose: &'static str,
        /// Why running it failed.
        #[source]
        source: std::io::Error,
    },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and on which path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// etcd or kube-apiserver exited or never became ready.
    #[error("{reason}\n{logs}")]
    Startup {
        /// What went wrong.
        reason: String,
        /// The tails of the etcd and kube-apiserver logs.
        logs: String,
    },

    /// The kubeconfig the control plane wrote could not be loaded.
    #[error("loading the kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: kube::config::KubeconfigError,
    },

    /// A CustomResourceDefinition could not be installed, or did not become usable in time.
    #[error("installing CRD {name}: {reason}")]
    Crd {
        /// The CRD's name.
        name: String,
        /// What went wrong.
        reason: String,
    },

    /// Building a Kubernetes client failed.
    #[error("building a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

impl LocalError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
