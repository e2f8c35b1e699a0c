//! The Helm chart in `charts/bkops` without rendering it (no `helm` here): its CRDs are the
//! generated ones, its RBAC is least-privilege, every value is typed in `values.schema.json` and
//! listed in the README, the pod is hardened, and the Dockerfile agrees with the chart.

#[path = "support/chart_rbac.rs"]
mod chart_rbac;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn chart() -> PathBuf {
    root().join("charts/bkops")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn values() -> Value {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&read(&chart().join("values.yaml"))).expect("values.yaml is YAML");
    serde_json::to_value(yaml).expect("values.yaml maps to JSON")
}

fn schema() -> Value {
    serde_json::from_str(&read(&chart().join("values.schema.json")))
        .expect("values.schema.json is JSON")
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn chart_crds_are_a_copy_of_the_generated_crds() {
    let generated = root().join("crds");
    let shipped = chart().join("crds");
    let want = file_names(&generated);
    let have = file_names(&shipped);
    assert_eq!(
        have, want,
        "charts/bkops/crds/ must hold exactly the files of crds/: run hack/sync-chart-crds.sh"
    );
    let stale: Vec<&String> = want
        .iter()
        .filter(|f| read(&generated.join(f)) != read(&shipped.join(f)))
        .collect();
    assert!(
        stale.is_empty(),
        "charts/bkops/crds/ differs from crds/ in {stale:?}: run hack/sync-chart-crds.sh"
    );
}

/// Every (apiGroup, resource, verb) a list of rules grants; panics on wildcards and on
/// resourceNames/nonResourceURLs, which the chart does not use.
fn grants(rules: &[k8s_openapi::api::rbac::v1::PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.is_none() && rule.resource_names.is_none(),
            "unexpected rule shape: {rule:?}"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        ![group, resource, verb].iter().any(|s| s.contains('*')),
                        "wildcard in {rule:?}"
                    );
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

fn triples(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for g in groups {
        for r in resources {
            for v in verbs {
                out.push((g.to_string(), r.to_string(), v.to_string()));
            }
        }
    }
    out
}

#[test]
fn operator_rules_are_exactly_the_least_privilege_set() {
    const JOBS: [&str; 4] = ["processjobs", "taskflows", "agentjobs", "executejobs"];
    let sub = |s: &str| JOBS.iter().map(|j| format!("{j}/{s}")).collect::<Vec<_>>();
    let status = sub("status");
    let finalizers = sub("finalizers");
    let mut want = BTreeSet::new();
    want.extend(triples(
        &["bkops.io"],
        &JOBS,
        &["get", "list", "watch", "patch"],
    ));
    want.extend(triples(
        &["bkops.io"],
        &status.iter().map(String::as_str).collect::<Vec<_>>(),
        &["patch"],
    ));
    want.extend(triples(
        &["bkops.io"],
        &finalizers.iter().map(String::as_str).collect::<Vec<_>>(),
        &["update"],
    ));
    want.extend(triples(&["bkops.io"], &["bkconnections"], &["get"]));
    want.extend(triples(&[""], &["secrets"], &["get"]));
    want.extend(triples(
        &["events.k8s.io"],
        &["events"],
        &["create", "patch"],
    ));
    let have = grants(&chart_rbac::operator_rules());
    let extra: Vec<_> = have.difference(&want).collect();
    let missing: Vec<_> = want.difference(&have).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "operator rules differ from the least-privilege set: extra {extra:?}, missing {missing:?}"
    );
}

#[test]
fn leader_election_rules_touch_leases_only() {
    let have = grants(&chart_rbac::leader_election_rules());
    let want: BTreeSet<_> = triples(
        &["coordination.k8s.io"],
        &["leases"],
        &["get", "create", "update", "patch"],
    )
    .into_iter()
    .collect();
    assert_eq!(have, want);
}

#[test]
fn rules_extraction_rejects_template_logic_and_ambiguity() {
    let plain = "kind: Role\nrules:\n  - apiGroups: [\"\"]\n    resources: [secrets]\n    verbs: [get]\n---\nkind: RoleBinding\n";
    let rules = chart_rbac::parse_rules_block(plain).expect("plain rules parse");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].verbs, ["get"]);

    let templated = "rules:\n  - apiGroups: [\"\"]\n    resources: [secrets]\n{{- if .Values.x }}\n    verbs: [get]\n{{- end }}\n";
    let err = chart_rbac::parse_rules_block(templated).expect_err("directive rejected");
    assert!(err.contains("template logic"), "{err}");
    let inline =
        "rules:\n  - apiGroups: [\"\"]\n    resources: [{{ .Values.r }}]\n    verbs: [get]\n";
    let err = chart_rbac::parse_rules_block(inline).expect_err("inline template rejected");
    assert!(err.contains("template logic"), "{err}");
    let two = "rules:\n  - {apiGroups: [\"\"], resources: [a], verbs: [get]}\n---\nrules:\n  - {apiGroups: [\"\"], resources: [b], verbs: [get]}\n";
    assert!(chart_rbac::parse_rules_block(two).is_err());
}

/// Dotted paths of values.yaml down to where the schema stops describing keys (free-form objects
/// such as `resources`), with the schema node of each.
fn value_paths<'s>(
    prefix: &str,
    value: &Value,
    schema: &'s Value,
    out: &mut Vec<(String, Option<&'s Value>)>,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    match (value.as_object(), props) {
        (Some(map), Some(props)) if !map.is_empty() => {
            for (key, sub) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match props.get(key) {
                    Some(s) => value_paths(&path, sub, s, out),
                    None => out.push((path, None)),
                }
            }
        }
        _ => out.push((prefix.to_owned(), Some(schema))),
    }
}

#[test]
fn every_value_is_typed_in_the_schema() {
    let (values, schema) = (values(), schema());
    let mut paths = Vec::new();
    value_paths("", &values, &schema, &mut paths);
    let untyped: Vec<&String> = paths
        .iter()
        .filter(|(_, s)| s.is_none_or(|s| s.get("type").is_none()))
        .map(|(p, _)| p)
        .collect();
    assert!(
        untyped.is_empty(),
        "values without a schema type: {untyped:?}"
    );
    assert!(paths.len() > 40, "walked only {} values", paths.len());
    let errors = validate(&values, &schema, "values");
    assert!(
        errors.is_empty(),
        "values.yaml breaks its schema: {errors:?}"
    );
}

#[test]
fn the_schema_rejects_bad_values() {
    let schema = schema();
    let mut bad = values();
    bad["logFormat"] = "yaml".into();
    bad["replicas"] = "two".into();
    bad["leaderElection"]["leaseNmae"] = "typo".into();
    bad["typoAtTheTop"] = true.into();
    let errors = validate(&bad, &schema, "values");
    for needle in [
        "values.logFormat",
        "values.replicas",
        "leaseNmae",
        "typoAtTheTop",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "no error about {needle}: {errors:?}"
        );
    }
}

/// A small JSON-schema check (type, properties, additionalProperties, items, enum, required,
/// minimum/maximum, minLength/maxLength), enough for the chart's own schema.
fn validate(value: &Value, schema: &Value, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            other => panic!("schema type {other} not supported by this check"),
        };
        if !ok {
            errors.push(format!("{path}: want {ty}, got {value}"));
            return errors;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} not in {allowed:?}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        errors.push(format!("{path}: {n} < {min}"));
    }
    if let (Some(max), Some(n)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n > max
    {
        errors.push(format!("{path}: {n} > {max}"));
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            errors.push(format!("{path}: length {len} out of range"));
        }
    }
    if let Some(map) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = req.as_str()
                && !map.contains_key(r)
            {
                errors.push(format!("{path}: missing {r}"));
            }
        }
        for (key, sub) in map {
            let sub_path = format!("{path}.{key}");
            match (
                props.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => errors.extend(validate(sub, s, &sub_path)),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{sub_path}: unknown key"));
                }
                (None, Some(s @ Value::Object(_))) => errors.extend(validate(sub, s, &sub_path)),
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, item) in list.iter().enumerate() {
            errors.extend(validate(item, items, &format!("{path}[{i}]")));
        }
    }
    errors
}

#[test]
fn every_value_is_listed_in_the_chart_readme() {
    let (values, schema) = (values(), schema());
    let readme = read(&chart().join("README.md"));
    let mut paths = Vec::new();
    value_paths("", &values, &schema, &mut paths);
    let missing: Vec<&String> = paths
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !readme.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "values missing from the chart README's table: {missing:?}"
    );
}

#[test]
fn the_pod_is_hardened_by_default() {
    let v = values();
    let c = &v["securityContext"];
    assert_eq!(c["allowPrivilegeEscalation"], false);
    assert_eq!(c["readOnlyRootFilesystem"], true);
    assert_eq!(c["runAsNonRoot"], true);
    assert_eq!(c["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(c["seccompProfile"]["type"], "RuntimeDefault");
    let p = &v["podSecurityContext"];
    assert_eq!(p["runAsNonRoot"], true);
    assert_eq!(p["seccompProfile"]["type"], "RuntimeDefault");
    assert_ne!(c["runAsUser"], 0);
    for key in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                v["resources"][key][res].is_string(),
                "resources.{key}.{res}"
            );
        }
    }
    assert_eq!(v["leaderElection"]["enabled"], true);

    let deployment = read(&chart().join("templates/deployment.yaml"));
    for needle in [
        "path: /healthz",
        "path: /readyz",
        "port: metrics",
        "name: POD_NAMESPACE",
        "fieldPath: metadata.namespace",
        "toYaml .Values.securityContext",
        "toYaml .Values.podSecurityContext",
        "toYaml .Values.resources",
        "- run\n",
    ] {
        assert!(
            deployment.contains(needle),
            "deployment.yaml lacks {needle:?}"
        );
    }
}

/// The flags the chart passes, as `--name`.
fn chart_flags() -> BTreeSet<String> {
    let deployment = read(&chart().join("templates/deployment.yaml"));
    deployment
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .map(|f| format!("--{}", f.split('=').next().unwrap_or(f)))
        .collect()
}

#[test]
fn chart_flags_are_the_operator_contract() {
    let flags = chart_flags();
    let contract: BTreeSet<String> = [
        "--metrics-addr",
        "--leader-elect",
        "--leader-election-namespace",
        "--lease-name",
        "--concurrency",
        "--log-level",
        "--log-format",
        "--namespaces",
        "--default-connection",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(flags, contract);

    // Each flag must be one `bkops run` accepts: a whole `--flag` word of its help.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bkops"))
        .args(["run", "--help"])
        .output()
        .expect("the bkops binary runs");
    assert!(
        out.status.success(),
        "`bkops run --help` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = String::from_utf8_lossy(&out.stdout);
    let known: BTreeSet<String> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(String::from)
        .collect();
    let unknown: Vec<&String> = flags.iter().filter(|f| !known.contains(*f)).collect();
    assert!(
        unknown.is_empty(),
        "the chart passes flags `bkops run` does not know: {unknown:?}; it knows {known:?}"
    );
}

/// Each flag with the value the chart's defaults give it is accepted by `bkops run`'s parser
/// (a value of the wrong shape, e.g. `--leader-elect=yes`, would crash-loop the pod).
#[test]
fn chart_flag_values_parse() {
    let v = values();
    let args = [
        format!("--metrics-addr=0.0.0.0:{}", v["metrics"]["port"]),
        format!("--leader-elect={}", v["leaderElection"]["enabled"]),
        "--leader-election-namespace=bkops-system".to_owned(),
        format!(
            "--lease-name={}",
            v["leaderElection"]["leaseName"]
                .as_str()
                .expect("leaseName")
        ),
        format!("--concurrency={}", v["concurrency"]),
        format!("--log-level={}", v["logLevel"].as_str().expect("logLevel")),
        format!(
            "--log-format={}",
            v["logFormat"].as_str().expect("logFormat")
        ),
        "--namespaces=team-a,team-b".to_owned(),
        "--default-connection=blueking".to_owned(),
    ];
    // `--kubeconfig` pointing nowhere stops `run` after parsing, before any cluster call; a
    // parse error exits with clap's status 2 and names the argument.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bkops"))
        .arg("run")
        .args(&args)
        .arg("--kubeconfig=/nonexistent/bkops-chart-test")
        .env_remove("KUBECONFIG")
        .output()
        .expect("the bkops binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(2),
        "a chart flag does not parse: {stderr}"
    );
    assert!(
        stderr.contains("/nonexistent/bkops-chart-test"),
        "`bkops run` should have stopped at the kubeconfig: {stderr}"
    );
}

#[test]
fn dockerfile_agrees_with_the_chart() {
    let dockerfile = read(&root().join("Dockerfile"));
    let uid = values()["securityContext"]["runAsUser"]
        .as_i64()
        .expect("runAsUser");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim() == format!("USER {uid}:{uid}")),
        "Dockerfile must run as USER {uid}:{uid}, the chart's runAsUser"
    );
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/bkops"]"#));
    assert!(dockerfile.contains(r#"CMD ["run"]"#));
    assert!(dockerfile.contains("--locked"), "build with Cargo.lock");

    // The builder's Rust must be at least the crate's rust-version.
    let manifest = read(&root().join("Cargo.toml"));
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("rust-version in Cargo.toml");
    let builder = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM docker.io/library/rust:"))
        .and_then(|rest| rest.split('-').next())
        .expect("FROM docker.io/library/rust:<version>-bookworm");
    let parse = |v: &str| -> Vec<u32> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    assert!(
        parse(builder) >= parse(&msrv),
        "builder rust {builder} older than rust-version {msrv}"
    );
}
