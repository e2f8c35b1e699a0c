//! The Helm chart in `charts/bkops` through Helm's own engine (`support::helm`: Helm v4's Go SDK
//! via `helm-python-sdk`): it lints clean, Helm's schema check refuses bad values, every key of
//! `values.yaml` changes the rendered output, the rendered RBAC is least-privilege and the pod
//! hardened, the rendered objects apply to a real API server, and the operator, configured by the
//! rendered Deployment's arguments and environment through `bkops run`'s own parser and
//! authenticated as the rendered ServiceAccount, carries every job kind through its lifecycle.
//! Also: the chart's CRDs are the generated ones, every value is typed and documented, and the
//! Dockerfile agrees with the chart.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bkops::controller::OperatorConfig;
use clap::{CommandFactory, Parser};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Value, json};
use support::env::{Env, EnvOptions};
use support::helm::{self, ApplyError, RenderRequest, Rendered};
use support::lifecycle::{LeaseRef, lifecycle, wait_until_bound};
use support::{TestNamespace, control_plane};

/// The release name of every render here.
const RELEASE: &str = "bkops";
/// The release namespace of the offline renders.
const RELEASE_NS: &str = "bkops-system";
/// The Kubernetes version the chart's `kubeVersion` floor names, and the test API server's.
const KUBE_VERSION: &str = "v1.20.2";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn chart() -> PathBuf {
    root().join(helm::CHART)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `values.yaml` as JSON (the chart's defaults).
fn values() -> Value {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&read(&chart().join("values.yaml"))).expect("values.yaml is YAML");
    serde_json::to_value(yaml).expect("values.yaml maps to JSON")
}

fn schema() -> Value {
    serde_json::from_str(&read(&chart().join("values.schema.json")))
        .expect("values.schema.json is JSON")
}

/// Every key of `values.yaml` set away from its default, as far as the keys can be on together:
/// the Deployment, RBAC, default connection, Service and ServiceMonitor all rendered, with the
/// operator's Role in `jobs_ns` and `release_ns`, its Lease in `jobs_ns` and its metrics on `port`.
/// The extra arguments make it poll as fast as the other operator tests do.
fn full_values(release_ns: &str, jobs_ns: &str, port: u16) -> Value {
    let hardened = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    });
    json!({
        "replicas": 2,
        "image": {
            "repository": "registry.example.com/platform/bkops",
            "tag": "0.1.0-test",
            "pullPolicy": "Always"
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "nameOverride": "ops",
        "fullnameOverride": "bkops-op",
        "serviceAccount": {
            "create": true,
            "name": "bkops-operator",
            "annotations": {"example.com/owner": "platform"}
        },
        "rbac": {"create": true, "aggregateToDefaultRoles": true},
        "watchNamespaces": [jobs_ns, release_ns],
        "defaultConnection": {
            "name": "bk-default",
            "create": true,
            // Not watchNamespaces, so that this key changes something on its own.
            "namespaces": [jobs_ns],
            "gateway": {"urlTemplate": "https://bkapi.example.com/api/{api_name}/", "stage": "stag"},
            "esbUrl": "https://paas.example.com",
            "tenantId": "tenant-a",
            "bkflowSpaceId": 7,
            "existingSecret": "blueking-credentials",
            "extraSpec": {"timeoutSeconds": 20}
        },
        "logLevel": "debug",
        "logFormat": "text",
        "concurrency": 8,
        "leaderElection": {"enabled": true, "leaseName": "bkops-lease", "namespace": jobs_ns},
        "metrics": {
            "port": port,
            "service": {
                "enabled": true,
                "type": "NodePort",
                "annotations": {"example.com/scrape": "true"}
            },
            "serviceMonitor": {
                "enabled": true,
                "interval": "15s",
                "scrapeTimeout": "5s",
                "labels": {"release": "prometheus"}
            },
            "prometheusRule": {
                "enabled": true,
                "labels": {"release": "prometheus"}
            }
        },
        "extraArgs": [
            "--poll-initial-seconds=0.3",
            "--poll-max-seconds=1",
            "--resolve-grace-seconds=3",
            "--submit-stall-seconds=3"
        ],
        "extraEnv": [{"name": "RUST_LOG", "value": "bkops=warn"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "512Mi"}
        },
        "podSecurityContext": {
            "runAsNonRoot": true,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "securityContext": hardened,
        "livenessProbe": {"initialDelaySeconds": 7, "periodSeconds": 11, "failureThreshold": 4},
        "readinessProbe": {"initialDelaySeconds": 3, "periodSeconds": 6, "failureThreshold": 2},
        "terminationGracePeriodSeconds": 45,
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"team": "platform"},
        "priorityClassName": "bkops-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                        ]
                    }]
                }
            }
        }
    })
}

/// The switches [`full_values`] must leave on, turned off: no ServiceAccount, RBAC, leader
/// election or Service from the chart.
fn off_values() -> Value {
    json!({
        "serviceAccount": {"create": false, "name": "existing-sa"},
        "rbac": {"create": false},
        "leaderElection": {"enabled": false},
        "metrics": {"service": {"enabled": false}}
    })
}

/// The offline value sets with their names, for messages.
fn value_sets() -> [(&'static str, Value); 3] {
    [
        ("defaults", json!({})),
        ("full", full_values(RELEASE_NS, "team-a", 9090)),
        ("off", off_values()),
    ]
}

fn render(values: &Value) -> Rendered {
    helm::render(values, RELEASE, RELEASE_NS).unwrap_or_else(|e| panic!("Helm render: {e}"))
}

fn defaults() -> Rendered {
    render(&json!({}))
}

fn full() -> Rendered {
    render(&value_sets()[1].1)
}

/// The operator's container of a rendered Deployment.
fn container(deployment: &Deployment) -> Container {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec");
    assert_eq!(pod.containers.len(), 1, "one container");
    pod.containers[0].clone()
}

/// `bkops` as `main.rs` parses it, cut down to its `run` subcommand.
#[derive(Parser, Debug)]
#[command(name = "bkops")]
enum Cli {
    Run(bkops::cli::RunArgs),
}

/// The environment variables `bkops run` reads through clap (`BKOPS_*`, `KUBECONFIG`).
fn clap_env_vars() -> BTreeSet<String> {
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("the run subcommand");
    run.get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// The operator configuration a pod named `pod_name` in `pod_namespace` gets from the rendered
/// Deployment: its container's arguments through `bkops run`'s own parser, its environment
/// (downward-API fields resolved as the kubelet would) given to
/// [`bkops::cli::RunArgs::config_with_env`].
fn pod_config(deployment: &Deployment, pod_namespace: &str, pod_name: &str) -> OperatorConfig {
    let c = container(deployment);
    assert_eq!(c.command, None, "the image's ENTRYPOINT (/bkops) runs");
    let args = c.args.unwrap_or_default();
    let Cli::Run(run) = Cli::try_parse_from(std::iter::once("bkops".to_owned()).chain(args))
        .unwrap_or_else(|e| panic!("`bkops` refuses the rendered arguments: {e}"));

    let mut env = BTreeMap::new();
    for var in c.env.unwrap_or_default() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), None) => v.clone(),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.namespace") => pod_namespace.to_owned(),
                Some("metadata.name") => pod_name.to_owned(),
                other => panic!(
                    "{}: a valueFrom this test cannot resolve: {other:?}",
                    var.name
                ),
            },
            other => panic!("{}: unexpected value {other:?}", var.name),
        };
        env.insert(var.name, value);
    }
    // clap reads these from the process environment, which this in-process parse cannot give
    // the pod's values: the chart must not set them (or this test must run `bkops` as a process).
    let unseen: Vec<_> = clap_env_vars()
        .into_iter()
        .filter(|v| env.contains_key(v))
        .collect();
    assert!(
        unseen.is_empty(),
        "the pod sets {unseen:?}, which clap reads"
    );
    run.config_with_env(|name| env.get(name).cloned())
        .unwrap_or_else(|e| panic!("the rendered arguments give no configuration: {e}"))
}

#[test]
fn chart_crds_are_a_copy_of_the_generated_crds() {
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    let generated = root().join("crds");
    let shipped = chart().join("crds");
    let want = names(&generated);
    assert_eq!(
        names(&shipped),
        want,
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

#[test]
fn helm_lint_is_clean() {
    for (name, values) in value_sets() {
        let report = helm::lint(&values, KUBE_VERSION)
            .unwrap_or_else(|e| panic!("helm lint --strict with the {name} values: {e}"));
        // Info findings (e.g. "icon is recommended") are no failure for `helm lint --strict`.
        let findings: Vec<&Value> = report["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["severity"].as_i64() != Some(1))
            .collect();
        assert!(findings.is_empty(), "{name}: {findings:?}");
    }
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

fn paths() -> Vec<String> {
    let (values, schema) = (values(), schema());
    let mut paths = Vec::new();
    value_paths("", &values, &schema, &mut paths);
    paths.into_iter().map(|(p, _)| p).collect()
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
    for (name, values) in value_sets() {
        helm::validate(&values)
            .unwrap_or_else(|e| panic!("the {name} values break values.schema.json: {e}"));
    }
}

#[test]
fn every_value_is_listed_in_the_chart_readme() {
    let readme = read(&chart().join("README.md"));
    let missing: Vec<String> = paths()
        .into_iter()
        .filter(|p| !readme.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "values missing from the chart README's table: {missing:?}"
    );
}

/// Helm refuses what `values.schema.json` forbids, both when asked to validate and on install
/// (a render for install checks the schema first), and the chart's own `fail` guards stop
/// combinations the schema cannot express.
#[test]
fn helm_refuses_bad_values() {
    let schema_cases = [
        (json!({"logFormat": "yaml"}), "/logFormat"),
        (json!({"replicas": "two"}), "/replicas"),
        (
            json!({"leaderElection": {"leaseNmae": "typo"}}),
            "leaseNmae",
        ),
        (json!({"typoAtTheTop": true}), "typoAtTheTop"),
        (json!({"watchNamespaces": ["Team_A"]}), "/watchNamespaces/0"),
        (json!({"metrics": {"port": 70000}}), "/metrics/port"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (
            json!({"defaultConnection": {"gateway": {"urlTemplate": "https://bkapi.example.com/"}}}),
            "/defaultConnection/gateway/urlTemplate",
        ),
    ];
    for (values, needle) in &schema_cases {
        let err = helm::validate(values).expect_err(&format!("{values} passes the schema"));
        assert!(err.contains(needle), "{values}: no word of {needle}: {err}");
        let err = helm::render(values, RELEASE, RELEASE_NS)
            .expect_err(&format!("{values} renders for install"));
        assert!(err.contains(needle), "{values}: no word of {needle}: {err}");
    }

    let connection = |c: Value| json!({"defaultConnection": c});
    let fail_cases = [
        (
            json!({"replicas": 2, "leaderElection": {"enabled": false}}),
            "replicas > 1 needs leaderElection.enabled",
        ),
        (
            connection(json!({"create": true, "existingSecret": "s", "esbUrl": "https://p"})),
            "needs defaultConnection.name",
        ),
        (
            connection(json!({"create": true, "name": "bk", "esbUrl": "https://p"})),
            "needs defaultConnection.existingSecret",
        ),
        (
            connection(json!({"create": true, "name": "bk", "existingSecret": "s"})),
            "needs gateway.urlTemplate, esbUrl or per-system urls",
        ),
        (
            json!({"metrics": {"service": {"enabled": false}, "serviceMonitor": {"enabled": true}}}),
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
    ];
    for (values, needle) in &fail_cases {
        helm::validate(values).unwrap_or_else(|e| panic!("{values} should pass the schema: {e}"));
        let err =
            helm::render(values, RELEASE, RELEASE_NS).expect_err(&format!("{values} renders"));
        assert!(
            err.contains(needle),
            "{values}: no word of {needle:?}: {err}"
        );
    }
}

fn get_path<'v>(value: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(value, |v, k| &v[k])
}

fn set_path(value: &mut Value, path: &str, to: Value) {
    let mut v = value;
    for key in path.split('.') {
        if !v.is_object() {
            *v = json!({});
        }
        v = v
            .as_object_mut()
            .expect("an object")
            .entry(key)
            .or_insert(Value::Null);
    }
    *v = to;
}

/// `over` merged into `base` as Helm merges values over defaults (maps key by key, the rest
/// replaced).
fn merged(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let m = b.get(k).map_or_else(|| v.clone(), |bv| merged(bv, v));
                out.insert(k.clone(), m);
            }
            Value::Object(out)
        }
        (_, o) => o.clone(),
    }
}

/// Every key of `values.yaml` (down to the free-form objects) is set away from its default by
/// the full or the off value set, and putting that one key back to its default changes Helm's
/// output (or makes Helm refuse the values, for keys another key depends on).
#[test]
fn every_value_is_exercised_and_changes_the_output() {
    let defaults = values();
    let sets: Vec<(&str, Value)> = value_sets().into_iter().skip(1).collect();
    let request = |values: Value| RenderRequest {
        values,
        name: RELEASE.to_owned(),
        namespace: RELEASE_NS.to_owned(),
    };
    // (key, set name, index of the set, the set with the key back at its default)
    let mut resets = Vec::new();
    let mut unexercised = Vec::new();
    for path in paths() {
        let default = get_path(&defaults, &path).clone();
        let mut exercised = false;
        for (i, (set, values)) in sets.iter().enumerate() {
            if *get_path(&merged(&defaults, values), &path) != default {
                exercised = true;
                let mut reset = values.clone();
                set_path(&mut reset, &path, default.clone());
                resets.push((path.clone(), *set, i, reset));
            }
        }
        if !exercised {
            unexercised.push(path);
        }
    }
    assert!(
        unexercised.is_empty(),
        "no value set changes {unexercised:?}: add them to full_values or off_values"
    );

    let mut requests: Vec<RenderRequest> = sets.iter().map(|(_, v)| request(v.clone())).collect();
    requests.extend(resets.iter().map(|(_, _, _, r)| request(r.clone())));
    let results = helm::render_batch(&requests);
    let (whole, reset_results) = results.split_at(sets.len());
    let mut changed = BTreeSet::new();
    let mut unchanged = BTreeMap::new();
    for ((path, set, i, _), result) in resets.iter().zip(reset_results) {
        let base = whole[*i]
            .as_ref()
            .unwrap_or_else(|e| panic!("the {set} values do not render: {e}"));
        match result {
            Ok(r) if r.manifest == base.manifest => {
                unchanged.insert(path.clone(), *set);
            }
            // A different render, or Helm refusing the values without this key.
            _ => {
                changed.insert(path.clone());
            }
        }
    }
    unchanged.retain(|path, _| !changed.contains(path));
    assert!(
        unchanged.is_empty(),
        "setting these back to their default changes nothing Helm renders (key: value set): \
         {unchanged:?}"
    );
    assert!(changed.len() > 40, "only {} keys checked", changed.len());
}

#[test]
fn the_pod_is_hardened_by_default() {
    let deployment: Deployment = defaults().one("Deployment");
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec");
    let p = pod.security_context.expect("pod securityContext");
    assert_eq!(p.run_as_non_root, Some(true));
    assert_eq!(
        p.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let c = container(&deployment);
    let s = c
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(s.allow_privilege_escalation, Some(false));
    assert_eq!(s.read_only_root_filesystem, Some(true));
    assert_eq!(s.run_as_non_root, Some(true));
    assert!(s.run_as_user.is_some_and(|u| u != 0));
    assert_eq!(
        s.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        s.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let resources = c.resources.clone().expect("resources");
    for (key, list) in [
        ("requests", resources.requests),
        ("limits", resources.limits),
    ] {
        let list = list.unwrap_or_default();
        for r in ["cpu", "memory"] {
            assert!(list.contains_key(r), "resources.{key}.{r}");
        }
    }
    // The probes ask the operator's own endpoints on the named metrics port.
    let port = c.ports.clone().unwrap_or_default();
    assert_eq!(port.len(), 1);
    assert_eq!(port[0].name.as_deref(), Some("metrics"));
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .expect("an httpGet probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into())
        );
    }
    // Leader election on, the Lease in the release namespace, the pod's own name in it.
    let config = pod_config(&deployment, RELEASE_NS, "bkops-abc");
    let lease = config
        .leader_election
        .expect("leader election on by default");
    assert_eq!(lease.namespace, RELEASE_NS);
    assert!(
        config.identity.starts_with("bkops-abc-"),
        "{}",
        config.identity
    );
}

/// Every (apiGroup, resource, verb) a list of rules grants; panics on wildcards and on
/// resourceNames/nonResourceURLs, which the chart does not use.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
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

fn rules(object: &Value) -> Vec<PolicyRule> {
    serde_json::from_value(object["rules"].clone()).expect("rules parse")
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
    want.extend(triples(
        &["bkops.io"],
        &["bkruns"],
        &["list", "create", "patch", "delete"],
    ));
    want.extend(triples(&[""], &["secrets"], &["get"]));
    want.extend(triples(
        &["events.k8s.io"],
        &["events"],
        &["create", "patch"],
    ));

    // All namespaces: one ClusterRole. Some namespaces: a Role in each, and nothing cluster-wide
    // but the opt-in roles for people.
    let defaults = defaults();
    let full = full();
    let mut roles = vec![(
        "the ClusterRole".to_owned(),
        defaults.get("ClusterRole", RELEASE),
    )];
    let operator_roles: Vec<&Value> = full
        .of_kind("Role")
        .into_iter()
        .filter(|r| r["metadata"]["name"] == "bkops-op")
        .collect();
    let namespaces: BTreeSet<&str> = operator_roles
        .iter()
        .filter_map(|r| r["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(namespaces, BTreeSet::from(["team-a", RELEASE_NS]));
    for role in operator_roles {
        roles.push((
            format!("the Role in {}", role["metadata"]["namespace"]),
            role,
        ));
    }
    for (what, role) in roles {
        let have = grants(&rules(role));
        let extra: Vec<_> = have.difference(&want).collect();
        let missing: Vec<_> = want.difference(&have).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{what} differs from the least-privilege set: extra {extra:?}, missing {missing:?}"
        );
    }
    let cluster_roles: BTreeSet<&str> = full
        .of_kind("ClusterRole")
        .into_iter()
        .filter_map(|r| r["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        cluster_roles,
        BTreeSet::from(["bkops-op-edit", "bkops-op-view"])
    );
    assert!(full.of_kind("ClusterRoleBinding").is_empty());
    assert!(
        defaults.find("ClusterRole", "bkops-edit").is_none(),
        "the roles for people are opt-in"
    );
}

#[test]
fn leader_election_rules_touch_leases_only() {
    let want: BTreeSet<_> = triples(
        &["coordination.k8s.io"],
        &["leases"],
        &["get", "create", "update", "patch"],
    )
    .into_iter()
    .collect();
    let role: Role =
        serde_json::from_value(defaults().get("Role", "bkops-leader-election").clone())
            .expect("a Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some(RELEASE_NS));
    assert_eq!(grants(&role.rules.unwrap_or_default()), want);
    // leaderElection.namespace moves the Role with the Lease.
    let full = full();
    let role = full.get("Role", "bkops-op-leader-election");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_eq!(grants(&rules(role)), want);
}

/// The flags the chart sets are the ones `bkops run` is documented to take from it, and the
/// rendered arguments give the configuration the values ask for.
#[test]
fn rendered_arguments_configure_the_operator_as_the_values_say() {
    let contract: BTreeSet<&str> = [
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
    .into();
    let full_values = &value_sets()[1].1;
    let extra: Vec<String> =
        serde_json::from_value(full_values["extraArgs"].clone()).expect("extraArgs");
    let deployment: Deployment = full().one("Deployment");
    let args = container(&deployment).args.unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("run"));
    assert!(args.ends_with(&extra), "extraArgs come last: {args:?}");
    let flags: BTreeSet<&str> = args[1..args.len() - extra.len()]
        .iter()
        .map(|a| a.split('=').next().unwrap_or(a))
        .collect();
    assert_eq!(flags, contract);

    let config = pod_config(&deployment, RELEASE_NS, "bkops-op-abc");
    assert_eq!(config.namespaces, ["team-a", RELEASE_NS]);
    assert_eq!(config.default_connection.as_deref(), Some("bk-default"));
    assert_eq!(config.concurrency, 8);
    assert_eq!(
        config.metrics_addr,
        Some("0.0.0.0:9090".parse().expect("addr"))
    );
    let lease = config.leader_election.expect("leader election");
    assert_eq!(
        (lease.namespace.as_str(), lease.lease_name.as_str()),
        ("team-a", "bkops-lease")
    );
    assert_eq!(
        config.poll_initial,
        Duration::from_millis(300),
        "extraArgs reach the parser"
    );

    let defaults_config = pod_config(&defaults().one("Deployment"), RELEASE_NS, "bkops-abc");
    assert!(defaults_config.namespaces.is_empty(), "all namespaces");
    assert_eq!(defaults_config.default_connection, None);
    assert_eq!(defaults_config.concurrency, 64);

    let off: Deployment = render(&off_values()).one("Deployment");
    assert!(pod_config(&off, RELEASE_NS, "x").leader_election.is_none());
}

#[test]
fn dockerfile_agrees_with_the_chart() {
    let dockerfile = read(&root().join("Dockerfile"));
    let uid = container(&defaults().one("Deployment"))
        .security_context
        .and_then(|s| s.run_as_user)
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

/// Applies a rendered chart server-side. The ServiceMonitor and PrometheusRule are skipped, on
/// purpose and checked: the test API server (1.20, no Prometheus Operator) has no
/// `monitoring.coreos.com` kinds, so they are only checked offline (the rules by promtool, in
/// tests/prometheus.rs), and must be the only objects the server does not serve.
async fn apply_rendered(client: &kube::Client, rendered: &Rendered) {
    let (monitors, objects): (Vec<&Value>, Vec<&Value>) = rendered
        .objects
        .iter()
        .partition(|o| o["kind"] == "ServiceMonitor" || o["kind"] == "PrometheusRule");
    for monitor in monitors {
        match helm::apply(client, [monitor]).await {
            Err(ApplyError::NotServed(gvk, _)) => assert_eq!(gvk.group, "monitoring.coreos.com"),
            other => panic!("the test API server has no Prometheus Operator kinds, yet: {other:?}"),
        }
    }
    let stored = helm::apply(client, objects.iter().copied())
        .await
        .unwrap_or_else(|e| panic!("the API server refuses the rendered chart: {e:?}"));
    assert_eq!(stored.len(), objects.len());
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
}

/// The offline renders (defaults, full, off) are what a real API server accepts: every object
/// applies server-side as rendered, into the namespaces it names.
#[tokio::test]
async fn rendered_charts_apply_to_the_api_server() {
    // The default connection is a BkConnection.
    support::env::install_crds().await;
    let client = support::client().await;
    for ns in [RELEASE_NS, "team-a"] {
        create_namespace(&client, ns).await;
    }
    for (name, values) in value_sets() {
        let rendered = render(&values);
        assert!(!rendered.objects.is_empty(), "{name}: nothing rendered");
        apply_rendered(&client, &rendered).await;
    }
}

/// A token of ServiceAccount `name` in `ns` from the TokenRequest API, as the kubelet mounts one.
async fn service_account_token(admin: &kube::Client, ns: &str, name: &str) -> String {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("a token for {ns}/{name}: {e}"))
        .status
        .expect("a TokenRequest status")
        .token
}

/// A free TCP port on this machine (for the operator's metrics, which bind 0.0.0.0).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Waits until `url` answers 200.
async fn wait_ok(url: &str) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = http.get(url).send().await.map(|r| r.status());
        if answer.as_ref().is_ok_and(|s| s.is_success()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url}: no 200 in 30 s, last {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole chart, every key set, installed as rendered; then the operator as the pod would
/// run: the rendered container's arguments and environment through `bkops run`'s parser, a
/// token of the rendered ServiceAccount, bound only by the rendered Roles, its probes answering
/// on the rendered port and paths, through the lifecycle of every job kind.
#[tokio::test]
async fn the_operator_runs_as_the_rendered_chart_says() {
    let cp = control_plane().await;
    let mut env = Env::with(
        "chart-jobs",
        EnvOptions {
            operator: false,
            ..EnvOptions::default()
        },
    )
    .await;
    let release_ns = TestNamespace::create("chart-release").await;
    let admin = env.ns.client();
    let jobs_ns = env.ns.name().to_owned();
    let port = free_port();
    let rendered = helm::render(
        &full_values(release_ns.name(), &jobs_ns, port),
        RELEASE,
        release_ns.name(),
    )
    .unwrap_or_else(|e| panic!("Helm render: {e}"));
    apply_rendered(&admin, &rendered).await;

    // Who the pod is: a token of the rendered ServiceAccount, bound by nothing but the rendered
    // Roles (the test's own admin client only sets up and reads back).
    let sa: ServiceAccount = rendered.one("ServiceAccount");
    let sa_name = sa.metadata.name.expect("name");
    let deployment: Deployment = rendered.one("Deployment");
    let pod_spec = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    assert_eq!(
        pod_spec.service_account_name.as_deref(),
        Some(sa_name.as_str())
    );
    let token = service_account_token(&admin, release_ns.name(), &sa_name).await;
    let mut config = cp.config();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..kube::config::AuthInfo::default()
    };
    let sa_client = kube::Client::try_from(config).expect("a client with the token");
    wait_until_bound(&sa_client, &jobs_ns, &jobs_ns).await;

    // What the pod runs: the rendered arguments and environment.
    let name = deployment.metadata.name.as_deref().expect("name");
    let operator = pod_config(
        &deployment,
        release_ns.name(),
        &format!("{name}-5d8c7b9f4-x2x4q"),
    );
    assert_eq!(operator.namespaces, [jobs_ns.as_str(), release_ns.name()]);
    let lease = operator.leader_election.clone().expect("leader election");
    let identity = operator.identity.clone();
    env.start_operator_with(sa_client, operator).await;

    let c = container(&deployment);
    let container_port = c.ports.unwrap_or_default()[0].container_port;
    assert_eq!(i32::from(port), container_port);
    for probe in [c.liveness_probe, c.readiness_probe] {
        let path = probe
            .and_then(|p| p.http_get)
            .and_then(|g| g.path)
            .expect("a probe path");
        wait_ok(&format!("http://127.0.0.1:{container_port}{path}")).await;
    }

    lifecycle(
        &env,
        LeaseRef {
            namespace: &lease.namespace,
            name: &lease.lease_name,
            holder: &identity,
        },
    )
    .await;
    env.stop().await;
}
