//! The local control plane (`bkops::local`) and the test support module, against real binaries.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use bkops::local::{ControlPlane, ControlPlaneOptions, LocalError, Locator};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use support::TestNamespace;

#[tokio::test]
async fn serves_the_api_as_admin() {
    let cp = support::control_plane().await;
    assert!(cp.server_url().starts_with("https://127.0.0.1:"));
    assert!(cp.kubeconfig_path().is_file());

    let client = support::client().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        namespaces
            .items
            .iter()
            .any(|ns| ns.metadata.name.as_deref() == Some("kube-system"))
    );
}

#[tokio::test]
async fn kubectl_uses_the_kubeconfig() {
    let cp = support::control_plane().await;
    let Some(mut kubectl) = cp.kubectl() else {
        eprintln!("no kubectl beside the binaries; skipping");
        return;
    };
    let output = kubectl
        .args(["auth", "can-i", "create", "namespaces"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "yes");
}

#[tokio::test]
async fn namespace_helper_creates_a_fresh_namespace_and_deletes_it() {
    let ns = TestNamespace::create("Namespace_Helper").await;
    assert!(ns.name().starts_with("namespace-helper-"), "{}", ns.name());
    let other = TestNamespace::create("Namespace_Helper").await;
    assert_ne!(ns.name(), other.name());

    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("key".to_owned(), "value".to_owned())])),
        ..ConfigMap::default()
    };
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap();
    let read = ns.api::<ConfigMap>().get("settings").await.unwrap();
    assert_eq!(read.data.unwrap()["key"], "value");

    let name = ns.name().to_owned();
    let namespaces = Api::<Namespace>::all(ns.client());
    ns.delete().await;
    // No controller-manager: the namespace stays, marked for deletion.
    let gone = namespaces.get_opt(&name).await.unwrap();
    assert!(gone.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()));

    // Dropping deletes too.
    let other_name = other.name().to_owned();
    drop(other);
    let dropped = namespaces.get_opt(&other_name).await.unwrap();
    assert!(dropped.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()));
}

#[tokio::test]
async fn impersonated_service_account_gets_only_what_rbac_grants() {
    let cp = support::control_plane().await;
    let ns = TestNamespace::create("rbac").await;
    let user = format!("system:serviceaccount:{}:bot", ns.name());
    let bot = cp
        .client_as(&user, &["system:serviceaccounts", "system:authenticated"])
        .unwrap();
    let bot_config_maps = Api::<ConfigMap>::namespaced(bot, ns.name());

    let denied = bot_config_maps
        .list(&ListParams::default())
        .await
        .unwrap_err();
    match denied {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403, got {other:?}"),
    }

    let role = Role {
        metadata: ObjectMeta {
            name: Some("read-config-maps".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["list".into()],
            ..PolicyRule::default()
        }]),
    };
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("bot-reads-config-maps".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "read-config-maps".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "bot".into(),
            namespace: Some(ns.name().to_owned()),
            ..Subject::default()
        }]),
    };
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // RBAC reads its objects from a cache; give it a moment, with a bound.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match bot_config_maps.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(err) if tokio::time::Instant::now() < deadline => {
                eprintln!("not yet allowed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(err) => panic!("still denied after the RoleBinding: {err}"),
        }
    }
    // Granted list, not create.
    let create = bot_config_maps
        .create(&PostParams::default(), &ConfigMap::default())
        .await;
    assert!(
        matches!(create, Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422)
    );
}

#[test]
fn missing_binaries_without_provisioning_say_how_to_fix_it() {
    let empty_cache = tempfile::tempdir().unwrap();
    let err = Locator::from_env()
        .assets(None)
        .cache_dir(empty_cache.path())
        .allow_provision(false)
        .provision()
        .unwrap_err();
    assert!(
        matches!(err, LocalError::BinariesNotFound { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("KUBEBUILDER_ASSETS"), "{text}");
    assert!(text.contains("provision-control-plane.sh"), "{text}");
    assert!(
        text.contains(&empty_cache.path().display().to_string()),
        "{text}"
    );

    // An assets folder without the binaries is reported as such, not silently skipped.
    let empty_assets = tempfile::tempdir().unwrap();
    let text = Locator::from_env()
        .assets(Some(empty_assets.path().into()))
        .provision()
        .unwrap_err()
        .to_string();
    assert!(text.contains("KUBEBUILDER_ASSETS is set to"), "{text}");
}

/// The environment path end to end: `BKOPS_NO_PROVISION=1` and an empty cache make
/// `ControlPlane::start` fail at once, naming the fix. Runs in a child process (this test binary
/// again, filtered to [`start_in_child`]) because the environment cannot safely change in a
/// multi-threaded test process.
#[test]
fn start_without_binaries_and_provisioning_fails_clearly() {
    let empty_cache = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "start_in_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BKOPS_TEST_CHILD", "1")
        .env("BKOPS_NO_PROVISION", "1")
        .env("BKOPS_CACHE_DIR", empty_cache.path())
        .env_remove("KUBEBUILDER_ASSETS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let error = stdout
        .lines()
        .find_map(|line| line.split_once("START ERROR: ").map(|(_, error)| error))
        .unwrap_or_else(|| panic!("the child printed no error:\n{stdout}"));
    assert!(error.contains("KUBEBUILDER_ASSETS is not set"), "{error}");
    assert!(error.contains("BKOPS_NO_PROVISION"), "{error}");
    assert!(error.contains("provision-control-plane.sh"), "{error}");
    // Provisioning really was off: nothing was written to the cache.
    assert!(
        std::fs::read_dir(empty_cache.path())
            .unwrap()
            .next()
            .is_none()
    );
}

/// Half of [`start_without_binaries_and_provisioning_fails_clearly`]; does nothing on its own.
#[tokio::test]
async fn start_in_child() {
    if std::env::var_os("BKOPS_TEST_CHILD").is_none() {
        return;
    }
    let started = tokio::time::Instant::now();
    match ControlPlane::start(ControlPlaneOptions::default()).await {
        Ok(_) => println!("START OK"),
        Err(err) => println!("START ERROR: {}", err.to_string().replace('\n', " ")),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A second, private control plane: stopping it ends both servers and removes its folder.
#[tokio::test]
async fn stop_ends_the_processes_and_removes_the_folder() {
    let cp = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .unwrap();
    let dir = cp.dir().to_path_buf();
    let pids = cp.process_ids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.iter().all(|pid| alive(*pid)));

    cp.stop().await.unwrap();
    assert!(
        pids.iter().all(|pid| !alive(*pid)),
        "{pids:?} still running"
    );
    assert!(!dir.exists());
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would, but the supervisor reaps its server.
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `bkops demo --keep`: a control plane in a given folder, detached, outlives its handle and is
/// reachable through the kubeconfig it leaves behind.
#[tokio::test]
async fn detached_control_plane_keeps_running_in_its_folder() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cp");
    let options = ControlPlaneOptions {
        dir: Some(dir.clone()),
        ..ControlPlaneOptions::default()
    };
    let cp = ControlPlane::start(options).await.unwrap();
    let pids = cp.process_ids();
    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    assert_eq!(cp.detach(), dir);

    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    client.apiserver_version().await.unwrap();
    assert!(pids.iter().all(|pid| alive(*pid)));

    // The command `bkops demo --keep` prints: it returns once kube-apiserver has gone, and etcd
    // then stops on its own SIGTERM.
    let stop = bkops::local::stop_command(&dir);
    let status = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&stop)
            .status(),
    )
    .await
    .expect("the stop command returns within a minute")
    .unwrap();
    assert!(status.success(), "`{stop}`: {status}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pids.iter().any(|pid| alive(*pid)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        pids.iter().all(|pid| !alive(*pid)),
        "{pids:?} still running"
    );
    assert!(dir.join("etcd").is_dir(), "the folder is kept");
}
