//! The files in `crds/` are exactly what `bkops crds` generates from the Rust types.
//! Regenerate with `cargo run -- crds --out-dir crds`.

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
