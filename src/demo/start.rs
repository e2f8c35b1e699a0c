//! Starting the pieces: the operator's log file, the control plane's binaries, the operator's
//! settings and the demo's namespace.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::controller::{OperatorConfig, default_identity};
use crate::local::{Binaries, Locator};

/// Sends the operator's (and everything else's) logs to a file: the terminal shows the table.
pub(super) fn init_logging(path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
    Ok(())
}

/// The control-plane binaries, provisioned when missing (which takes minutes, once).
pub(super) async fn binaries() -> anyhow::Result<Binaries> {
    let locator = Locator::from_env();
    let missing = match locator.locate() {
        Ok(binaries) => return Ok(binaries),
        Err(err) => err,
    };
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let no_provision = var("BKOPS_NO_PROVISION").is_some_and(|v| v != "0" && v != "false");
    if var("KUBEBUILDER_ASSETS").is_some() || no_provision {
        return Err(missing.into());
    }
    crate::outln!(
        "kube-apiserver and etcd are not installed yet: building them once into {} from Debian's \
         sources (Debian bookworm, needs root; 5-10 minutes). Set KUBEBUILDER_ASSETS to a folder \
         holding kube-apiserver and etcd to skip this.",
        locator
            .cache_bin_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "the cache folder".into())
    )?;
    let binaries = tokio::task::spawn_blocking(move || locator.provision())
        .await
        .context("provisioning the control plane")??;
    Ok(binaries)
}

/// The operator's settings for the demo: only the demo namespace, quick polls, no Lease.
pub(super) fn operator_config(namespace: &str) -> OperatorConfig {
    OperatorConfig {
        namespaces: vec![namespace.to_owned()],
        default_connection: Some("blueking".to_owned()),
        concurrency: 8,
        submit_stall: Duration::from_secs(300),
        resolve_grace: Duration::from_secs(10),
        poll_initial: Duration::from_millis(500),
        poll_max: Duration::from_secs(2),
        leader_election: None,
        metrics_addr: None,
        identity: default_identity(),
        run_retention: None,
    }
}

pub(super) async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}
