//! Shared test support: one real control plane per test binary, and a namespace per test.
//!
//! Use it from any file in `tests/`:
//!
//! ```ignore
//! mod support;
//!
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use support::TestNamespace;
//!
//! #[tokio::test]
//! async fn something() {
//!     let ns = TestNamespace::create("something").await;
//!     let config_maps = ns.api::<ConfigMap>();
//!     // ... apply objects in `ns.name()`, run the operator with `ns.client()` ...
//! }
//! ```
//!
//! The control plane starts on first use in a test binary and lives until the binary ends (its
//! processes stop then; see `bkops::local`). Each `#[tokio::test]` has its own runtime and a
//! `kube::Client` is tied to the runtime it was built in, so clients are never shared: every call to
//! [`client`] or [`TestNamespace::client`] builds a fresh one for the calling test.
//!
//! Binaries come from `KUBEBUILDER_ASSETS` or the cache (provisioned on first use unless
//! `BKOPS_NO_PROVISION` is set); `hack/test.sh` provisions before running the tests.

// Each test binary compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

pub mod env;
pub mod helm;
pub mod lifecycle;

use std::time::Duration;

use bkops::local::{ControlPlane, ControlPlaneOptions};
use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use tokio::sync::OnceCell;

static CONTROL_PLANE: OnceCell<Result<ControlPlane, String>> = OnceCell::const_new();

/// This test binary's control plane, started on first call. Panics (failing the test) with the
/// reason, including the servers' log tails, when it cannot start; every later call fails the same way
/// without trying again.
pub async fn control_plane() -> &'static ControlPlane {
    let started = CONTROL_PLANE
        .get_or_init(|| async {
            let result = ControlPlane::start(ControlPlaneOptions::default()).await;
            if let Ok(cp) = &result {
                eprintln!(
                    "control plane ready in {:.1} s at {} (kubeconfig: {})",
                    cp.startup_duration().as_secs_f32(),
                    cp.server_url(),
                    cp.kubeconfig_path().display()
                );
            }
            result.map_err(|err| err.to_string())
        })
        .await;
    match started {
        Ok(cp) => cp,
        Err(err) => panic!("the test control plane did not start: {err}"),
    }
}

/// An admin client for the calling test.
pub async fn client() -> kube::Client {
    control_plane()
        .await
        .client()
        .expect("building an admin client")
}

/// A namespace of its own for one test: created by [`TestNamespace::create`], deleted when dropped
/// (best effort). With no controller-manager running, a deleted namespace stays `Terminating` with
/// its objects in place; names are unique, so that does not matter.
pub struct TestNamespace {
    name: String,
    client: kube::Client,
    config: kube::Config,
    deleted: bool,
}

impl TestNamespace {
    /// Creates a namespace named `<prefix>-<random>`; `prefix` is usually the test's name.
    pub async fn create(prefix: &str) -> Self {
        let cp = control_plane().await;
        let name = unique_name(prefix);
        let client = cp.client().expect("building an admin client");
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("bkops.io/test".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|err| panic!("creating test namespace {name}: {err}"));
        Self {
            name,
            client,
            config: cp.config(),
            deleted: false,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client (built in the calling test's runtime).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// An API for namespaced objects of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace now, failing the test if that fails.
    pub async fn delete(mut self) {
        self.deleted = true;
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await
            .unwrap_or_else(|err| panic!("deleting test namespace {}: {err}", self.name));
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Drop cannot await, and the test's runtime may be going away (a panic unwinds through it):
        // delete from a thread with a runtime of its own, and give up after a few seconds.
        let name = std::mem::take(&mut self.name);
        let config = self.config.clone();
        let deleter = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(client) = kube::Client::try_from(config) else {
                    return;
                };
                let namespaces = Api::<Namespace>::all(client);
                let params = DeleteParams::background();
                let delete = namespaces.delete(&name, &params);
                if let Ok(Err(err)) = tokio::time::timeout(Duration::from_secs(5), delete).await {
                    eprintln!("could not delete test namespace {name}: {err}");
                }
            });
        });
        let _ = deleter.join();
    }
}

/// `<prefix>-<6 random chars>`, a valid namespace name (a DNS label of at most 63 characters).
fn unique_name(prefix: &str) -> String {
    let mut base: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(50);
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "test" } else { base };
    let suffix: String = (0..6)
        .map(|_| {
            let n = rand::random_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect();
    format!("{base}-{suffix}")
}

/// The status of a job object (empty when it has none).
pub fn status<K: bkops::run::JobKind>(o: &K) -> bkops::api::JobStatus {
    o.job_status().cloned().unwrap_or_default()
}

/// The current run of a job object (empty when it has none).
pub fn run_of<K: bkops::run::JobKind>(o: &K) -> bkops::api::RunStatus {
    status(o).run.unwrap_or_default()
}

/// The notes of the Events of `reason` about object `name` in `ns`, as listed now.
pub async fn events_about(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .map(|e| e.note.unwrap_or_default())
        .collect()
}
