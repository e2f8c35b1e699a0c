//! The files in `crds/` are exactly what `bkops crds` generates from the Rust types.
//! Regenerate with `cargo run -- crds --out-dir crds`. And the install path documented for
//! Kubernetes 1.20 installs them on the 1.20 API server.

mod support;

use bkops::crdgen::{self, CrdKind};

#[test]
fn crd_files_match_the_rust_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut stale = Vec::new();
    for kind in CrdKind::ALL {
        let want = crdgen::to_yaml(&kind.crd()).expect("CRD renders");
        let path = dir.join(kind.file_name());
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale CRD files {stale:?}: run `cargo run -- crds --out-dir crds`"
    );
    let files = std::fs::read_dir(&dir).expect("crds/").count();
    assert_eq!(
        files,
        CrdKind::ALL.len(),
        "crds/ holds exactly one file per kind"
    );
}

#[test]
fn job_kinds_share_category_columns_and_status_subresource() {
    for kind in [
        CrdKind::ProcessJob,
        CrdKind::Taskflow,
        CrdKind::AgentJob,
        CrdKind::ExecuteJob,
    ] {
        let crd = kind.crd();
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["bkops".to_owned()][..]),
            "{kind:?}"
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{kind:?} status subresource"
        );
        let cols: Vec<&str> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            cols,
            ["Phase", "Job", "OK", "Failed", "Age", "Message"],
            "{kind:?}"
        );
        assert!(
            !crd.spec
                .names
                .short_names
                .clone()
                .unwrap_or_default()
                .is_empty()
        );
    }
}

#[test]
fn every_spec_field_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                if sub
                    .get("description")
                    .and_then(|d| d.as_str())
                    .is_none_or(str::is_empty)
                {
                    missing.push(p.clone());
                }
                walk(&p, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for kind in CrdKind::ALL {
        let crd = kind.crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema");
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        walk(&format!("{kind:?}.spec"), spec, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description (kubectl explain shows nothing): {missing:?}"
    );
}

/// `kubectl explain` prints these descriptions to users, who have the repository at most: they
/// must not cite design notes or their sections.
#[test]
fn no_description_cites_design_notes() {
    fn walk(path: &str, v: &serde_json::Value, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, sub) in map {
                    let p = format!("{path}.{k}");
                    if k == "description"
                        && let Some(text) = sub.as_str()
                        && (text.contains("DESIGN") || text.contains('§'))
                    {
                        found.push(format!("{p}: {text}"));
                    }
                    walk(&p, sub, found);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, sub) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), sub, found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    for kind in CrdKind::ALL {
        let crd = serde_json::to_value(kind.crd()).expect("CRD serializes");
        walk(&kind.file_name(), &crd, &mut found);
    }
    assert!(
        found.is_empty(),
        "descriptions citing design notes: {found:#?}"
    );
}

/// `kubectl` (the provisioned 1.20.2, beside kube-apiserver) on `crds/` with `args`, against
/// this binary's API server: (success, stdout + stderr).
fn kubectl_crds(cp: &bkops::local::ControlPlane, args: &[&str]) -> (bool, String) {
    let mut kubectl = cp.kubectl().expect(
        "no kubectl beside kube-apiserver (hack/provision-control-plane.sh builds one; with \
         KUBEBUILDER_ASSETS, put kubectl in that folder)",
    );
    let out = kubectl
        .args(args)
        .arg("-f")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"))
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The install paths docs/install.md gives for Kubernetes 1.20, on the 1.20.2 API server: the
/// server-side apply the newer versions use is refused (the server does not know the CRDs'
/// `x-kubernetes-validations`), so is a client-side apply with kubectl's schema check, and a
/// client-side apply with `--validate=false` installs the CRDs (the server drops the rules),
/// upgrades them in place, and serves their kinds.
#[tokio::test]
async fn the_documented_1_20_crd_install_works_on_1_20() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::runtime::wait::{await_condition, conditions};

    let cp = support::control_plane().await;
    let client = cp.client().expect("admin client");
    let version = client.apiserver_version().await.expect("server version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "20"),
        "this test pins what Kubernetes 1.20 does"
    );

    let (ok, out) = kubectl_crds(cp, &["apply", "--server-side"]);
    assert!(
        !ok && out.contains(r#"unknown field "x-kubernetes-validations""#),
        "server-side apply: {out}"
    );
    let (ok, out) = kubectl_crds(cp, &["apply", "--server-side", "--validate=false"]);
    assert!(
        !ok && out.contains("x-kubernetes-validations: field not declared in schema"),
        "server-side apply without kubectl's check: {out}"
    );
    let (ok, out) = kubectl_crds(cp, &["apply"]);
    assert!(
        !ok && out.contains("--validate=false"),
        "client-side apply with kubectl's check: {out}"
    );

    // The documented path: install, then the same again as on an upgrade.
    // A CRD without CEL rules (BkRun) went in with the refused server-side apply already.
    for verb in ["created", "configured"] {
        let (ok, out) = kubectl_crds(cp, &["apply", "--validate=false"]);
        assert!(ok, "kubectl apply --validate=false -f crds/: {out}");
        for kind in CrdKind::ALL {
            let crd = kind.crd();
            let name = crd.metadata.name.clone().unwrap_or_default();
            let has_rules = serde_json::to_string(&crd)
                .expect("a CRD serializes")
                .contains("x-kubernetes-validations");
            let want = if has_rules { verb } else { "unchanged" };
            let line = format!("customresourcedefinition.apiextensions.k8s.io/{name} {want}");
            assert!(out.contains(&line), "{line:?} expected in: {out}");
        }
    }
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for kind in CrdKind::ALL {
        let name = kind.crd().metadata.name.expect("CRD name");
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("{name} not Established in 30 s"))
        .expect("watching the CRD");
        // (The last-applied annotation still holds them: kubectl's, not the server's.)
        let stored = api.get(&name).await.expect("the CRD").spec;
        let schema = serde_json::to_string(&stored).expect("JSON");
        assert!(
            !schema.contains("x-kubernetes-validations"),
            "{name}: the 1.20 server keeps no CEL rules"
        );
    }
    // Its kinds are served: the tests' own install (a plain create, as Helm 3 does) finds them
    // there and waits until each lists.
    bkops::local::install_crds(&client)
        .await
        .expect("the CRDs are served");
}
