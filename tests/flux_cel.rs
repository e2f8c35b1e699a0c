//! The Flux health checks in `deploy/flux/health-checks.yaml` (`spec.healthCheckExprs`), read from
//! that file and evaluated with the `cel` crate the way kustomize-controller (Flux v2.5+) evaluates
//! them, against the Argo CD health tests in `deploy/argocd/resource_customizations`: every
//! `health_test.yaml` case must give the Flux health that its Argo CD health maps to, so the two
//! tools cannot disagree.
//!
//! kustomize-controller, for an object of a listed kind:
//! 1. `status.observedGeneration` set and not `metadata.generation`: InProgress;
//! 2. else `inProgress`, `failed`, `current` in that order, the first true one wins: InProgress,
//!    Failed, Current; none true: InProgress;
//! 3. an expression that raises an error (or gives no bool) makes the object Unknown: Flux shows
//!    the error and keeps waiting.
//!
//! The variables are the object's top-level fields (`metadata`, `spec`, `status`); integers are
//! 64-bit ints, as in Kubernetes' unstructured objects.
//!
//! Argo CD health to Flux health:
//! - Healthy: Current.
//! - Progressing: InProgress. With no `status` at all there is no `status` variable and no guard
//!   can test for one (`has()` needs a field of a present value): Unknown with an error naming
//!   `status`, which Flux waits through exactly as through InProgress.
//! - Suspended (waiting for a person; `spec.suspend` holding back a run that is due): InProgress.
//!   The run the spec asks for has not happened, so whatever depends on it must not go ahead; Flux
//!   waits, as Argo CD's sync waits at a Suspended resource, until it moves or the timeout.
//! - Degraded: Failed.
//! - Unknown (a phase the checks do not know): InProgress, as Flux gives when nothing is true.
//! - Missing: none; Flux reports an object that is not there itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, ExecutionError, Program, Value as Cel};
use serde_json::{Value, json};

const KINDS: [&str; 4] = bkops::run::kinds::JOB_KIND_NAMES;
const API_VERSION: &str = "bkops.io/v1alpha1";
/// The three expressions in the order kustomize-controller evaluates them.
const FIELDS: [&str; 3] = ["inProgress", "failed", "current"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let y: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
    serde_json::to_value(y).expect("YAML maps to JSON")
}

/// Flux's health of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Current,
    InProgress,
    Failed,
}

/// Why Flux would show an object as Unknown.
#[derive(Debug)]
enum Failure {
    /// The expression raised an error.
    Eval(&'static str, ExecutionError),
    /// The expression gave something other than a bool.
    NotBool(&'static str, Cel),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Eval(field, e) => write!(f, "{field} fails: {e}"),
            Failure::NotBool(field, v) => write!(f, "{field} gives {v:?}, not a bool"),
        }
    }
}

/// One kind's three expressions, compiled.
struct Check {
    programs: Vec<(&'static str, Program)>,
}

impl Check {
    fn compile(entry: &Value) -> Check {
        let programs = FIELDS
            .iter()
            .map(|&field| {
                let source = entry[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("{field} missing in {entry}"));
                let program = Program::compile(source)
                    .unwrap_or_else(|e| panic!("{field} does not parse: {e}\n{source}"));
                (field, program)
            })
            .collect();
        Check { programs }
    }

    /// One expression on its own, as Flux runs it.
    fn eval(&self, field: &'static str, obj: &Value) -> Result<bool, Failure> {
        let (_, program) = self
            .programs
            .iter()
            .find(|(f, _)| *f == field)
            .expect("a known field");
        run(program, field, obj)
    }

    /// The object's health as kustomize-controller computes it (see the module docs).
    fn health(&self, obj: &Value) -> Result<Health, Failure> {
        let observed = obj["status"]["observedGeneration"].as_i64();
        let generation = obj["metadata"]["generation"].as_i64();
        if let (Some(observed), Some(generation)) = (observed, generation)
            && observed != generation
        {
            return Ok(Health::InProgress);
        }
        let healths = [Health::InProgress, Health::Failed, Health::Current];
        for (field, health) in FIELDS.into_iter().zip(healths) {
            if self.eval(field, obj)? {
                return Ok(health);
            }
        }
        Ok(Health::InProgress)
    }
}

/// `program` with the object's top-level fields as variables.
fn run(program: &Program, field: &'static str, obj: &Value) -> Result<bool, Failure> {
    let mut ctx = Context::default();
    for (name, value) in obj.as_object().expect("an object") {
        ctx.add_variable_from_value(name.as_str(), to_cel(value));
    }
    match program.execute(&ctx) {
        Ok(Cel::Bool(b)) => Ok(b),
        Ok(other) => Err(Failure::NotBool(field, other)),
        Err(e) => Err(Failure::Eval(field, e)),
    }
}

/// A JSON value as Kubernetes hands it to Flux's CEL: integers as int, other numbers as double.
fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => Cel::Map(Map {
            map: Arc::new(
                map.iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect::<HashMap<_, _>>(),
            ),
        }),
    }
}

/// The `healthCheckExprs` entries of the shipped snippet, by kind.
fn entries() -> BTreeMap<String, Value> {
    let snippet = yaml_file(&root().join("deploy/flux/health-checks.yaml"));
    assert_eq!(snippet["apiVersion"], "kustomize.toolkit.fluxcd.io/v1");
    assert_eq!(snippet["kind"], "Kustomization");
    let mut out = BTreeMap::new();
    for entry in snippet["spec"]["healthCheckExprs"]
        .as_array()
        .expect("spec.healthCheckExprs: [...]")
    {
        let kind = entry["kind"].as_str().expect("kind").to_owned();
        assert_eq!(entry["apiVersion"], API_VERSION, "{kind}");
        // kustomize-controller refuses a Kustomization with two checks for one kind.
        assert!(
            out.insert(kind.clone(), entry.clone()).is_none(),
            "{kind} twice"
        );
    }
    out
}

fn checks() -> BTreeMap<String, Check> {
    entries()
        .into_iter()
        .map(|(kind, entry)| (kind, Check::compile(&entry)))
        .collect()
}

/// The Flux health an Argo CD health status stands for (see the module docs).
fn flux_health(argo: &str) -> Health {
    match argo {
        "Healthy" => Health::Current,
        "Progressing" | "Suspended" | "Unknown" => Health::InProgress,
        "Degraded" => Health::Failed,
        other => panic!("no Flux health for Argo CD health {other}"),
    }
}

fn is_missing_status(failure: &Failure) -> bool {
    matches!(failure, Failure::Eval("inProgress", ExecutionError::UndeclaredReference(name)) if name.as_str() == "status")
}

#[test]
fn snippet_covers_the_four_kinds_with_the_same_expressions() {
    let entries = entries();
    assert_eq!(
        entries.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        KINDS.into_iter().collect::<BTreeSet<_>>()
    );
    let reference = &entries[KINDS[0]];
    for kind in KINDS {
        for field in FIELDS {
            assert_eq!(
                entries[kind][field], reference[field],
                "{kind}.{field} differs from {}'s: the four kinds share one status shape",
                KINDS[0]
            );
        }
    }
}

#[test]
fn flux_agrees_with_argo_cd_on_every_health_test() {
    let checks = checks();
    let mut failures = Vec::new();
    let mut ran = 0;
    for kind in KINDS {
        let dir = root()
            .join("deploy/argocd/resource_customizations/bkops.io")
            .join(kind);
        let tests = yaml_file(&dir.join("health_test.yaml"));
        for test in tests["tests"].as_array().expect("tests: [...]") {
            let input = test["inputPath"].as_str().expect("inputPath");
            let argo = test["healthStatus"]["status"].as_str().expect("status");
            let obj = yaml_file(&dir.join(input));
            let want = flux_health(argo);
            ran += 1;
            match checks[kind].health(&obj) {
                Ok(got) if got == want => {}
                // No status yet: Flux waits on the error, as Argo CD on Progressing.
                Err(e) if obj.get("status").is_none() && argo == "Progressing" => {
                    if !is_missing_status(&e) {
                        failures.push(format!("{kind} {input}: no status gives {e}"));
                    }
                }
                got => failures.push(format!(
                    "{kind} {input}: Argo CD {argo}, so want {want:?}, got {got:?}"
                )),
            }
        }
    }
    assert!(failures.is_empty(), "Flux health:\n{}", failures.join("\n"));
    assert!(ran >= 60, "ran only {ran} health tests");
}

/// Every path to a key below `metadata`, `spec` and `status`, at any depth (list items included).
fn key_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                prefix.push(k.clone());
                out.push(prefix.clone());
                key_paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(i.to_string());
                key_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn without(obj: &Value, path: &[String]) -> Value {
    let mut out = obj.clone();
    let (last, parents) = path.split_last().expect("a path");
    let mut at = &mut out;
    for p in parents {
        at = match at {
            Value::Array(items) => &mut items[p.parse::<usize>().expect("an index")],
            other => &mut other[p.as_str()],
        };
    }
    at.as_object_mut().expect("an object").remove(last);
    out
}

/// Each expression, on its own, on `obj` with each key below the top level removed in turn; returns
/// what raised an error. The top-level fields stay: the API server always sets `metadata`, the CRDs
/// require `spec`, and a missing `status` cannot be guarded (see the module docs).
fn errors_without_each_field(check: &Check, name: &str, obj: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    for top in ["metadata", "spec", "status"] {
        let mut paths = Vec::new();
        key_paths(&obj[top], &mut vec![top.to_owned()], &mut paths);
        for path in paths {
            let trimmed = without(obj, &path);
            for field in FIELDS {
                if let Err(e) = check.eval(field, &trimmed) {
                    errors.push(format!("{name} without {}: {e}", path.join(".")));
                }
            }
        }
    }
    errors
}

fn fixtures(kind: &str) -> Vec<(String, Value)> {
    let dir = root()
        .join("deploy/argocd/resource_customizations/bkops.io")
        .join(kind)
        .join("testdata");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/")
        .map(|e| e.expect("entry").path())
        .map(|p| (p.display().to_string(), yaml_file(&p)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn no_absent_field_below_the_top_level_makes_an_expression_fail() {
    let checks = checks();
    let mut errors = Vec::new();
    let mut removed = 0;
    for kind in KINDS {
        for (name, obj) in fixtures(kind) {
            if obj.get("status").is_none() {
                continue;
            }
            removed += 1;
            errors.extend(errors_without_each_field(&checks[kind], &name, &obj));
        }
    }
    assert!(removed >= 60, "tried only {removed} objects");
    assert!(errors.is_empty(), "unguarded reads:\n{}", errors.join("\n"));
}

fn object(status: Value) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "ProcessJob",
        "metadata": {"name": "restart-nginx", "namespace": "web", "generation": 1},
        "spec": {"connectionRef": {"name": "blueking"}},
        "status": status,
    })
}

#[test]
fn sparse_objects_give_a_health_without_errors() {
    let checks = checks();
    let check = &checks["ProcessJob"];
    for (name, obj, want) in [
        ("empty status", object(json!({})), Health::InProgress),
        (
            "observed, nothing else",
            object(json!({"observedGeneration": 1})),
            Health::InProgress,
        ),
        (
            "no conditions, Running",
            object(json!({"observedGeneration": 1, "phase": "Running"})),
            Health::InProgress,
        ),
        (
            "no conditions, Succeeded",
            object(json!({"observedGeneration": 1, "phase": "Succeeded"})),
            Health::Current,
        ),
        (
            "no conditions, Failed",
            object(json!({"observedGeneration": 1, "phase": "Failed"})),
            Health::Failed,
        ),
        (
            "empty conditions, Unknown",
            object(json!({"observedGeneration": 1, "phase": "Unknown", "conditions": []})),
            Health::Failed,
        ),
        (
            "conditions without type or status",
            object(json!({"observedGeneration": 1, "phase": "Running", "conditions": [{}]})),
            Health::InProgress,
        ),
        (
            "Stalled while Pending (BlueKing out of reach)",
            object(
                json!({"observedGeneration": 1, "phase": "Pending", "conditions": [
                    {"type": "Stalled", "status": "True", "reason": "ConnectionUnreachable"}
                ]}),
            ),
            Health::Failed,
        ),
        (
            "a phase the checks do not know (Argo CD: Unknown)",
            object(json!({"observedGeneration": 1, "phase": "Paused"})),
            Health::InProgress,
        ),
        (
            "rerun asked for, never handled",
            {
                let mut o = object(json!({"observedGeneration": 1, "phase": "Failed"}));
                o["metadata"]["annotations"] =
                    json!({"bkops.io/rerun-requested-at": "2025-03-02T10:30:00Z"});
                o
            },
            Health::InProgress,
        ),
        (
            "rerun asked for while suspended (Argo CD: Healthy)",
            {
                let mut o = object(json!({"observedGeneration": 1, "phase": "Succeeded"}));
                o["metadata"]["annotations"] =
                    json!({"bkops.io/rerun-requested-at": "2025-03-02T10:30:00Z"});
                o["spec"]["suspend"] = json!(true);
                o
            },
            Health::Current,
        ),
        (
            "no generation in metadata",
            {
                let mut o = object(json!({"observedGeneration": 1, "phase": "Succeeded"}));
                o["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("generation");
                o
            },
            Health::Current,
        ),
    ] {
        match check.health(&obj) {
            Ok(got) => assert_eq!(got, want, "{name}"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn an_object_without_status_is_unknown_and_waited_for() {
    let checks = checks();
    let mut obj = object(json!({}));
    obj.as_object_mut().expect("object").remove("status");
    let got = checks["ProcessJob"].health(&obj);
    assert!(
        matches!(&got, Err(e) if is_missing_status(e)),
        "want an error naming status, got {got:?}"
    );
}

/// The evaluator does fail on a read of an absent field, so the guard tests above can fail.
#[test]
fn unguarded_reads_of_absent_fields_fail() {
    let no_conditions = object(json!({"observedGeneration": 1, "phase": "Unknown"}));
    for (source, obj, want) in [
        (
            "status.conditions.exists(c, c.type == 'Stalled')",
            &no_conditions,
            "conditions",
        ),
        ("status.message == ''", &no_conditions, "message"),
        ("'x' in metadata.annotations", &no_conditions, "annotations"),
    ] {
        match run(&Program::compile(source).expect("parses"), "failed", obj) {
            Err(Failure::Eval(_, ExecutionError::NoSuchKey(key))) => {
                assert_eq!(key.as_str(), want, "{source}")
            }
            other => panic!("{source}: want no such key {want}, got {other:?}"),
        }
    }

    // The shipped `failed` without its conditions guard: the sweep over absent fields catches it.
    let entries = entries();
    let mut entry = entries["ProcessJob"].clone();
    let shipped = entry["failed"].as_str().expect("failed").to_owned();
    let unguarded = shipped.replace("has(status.conditions) && ", "");
    assert_ne!(unguarded, shipped, "the guard to remove is not in `failed`");
    entry["failed"] = Value::String(unguarded);
    let check = Check::compile(&entry);
    let dir = root().join("deploy/argocd/resource_customizations/bkops.io/ProcessJob/testdata");
    let obj = yaml_file(&dir.join("healthy_succeeded.yaml"));
    let errors = errors_without_each_field(&check, "healthy_succeeded", &obj);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("without status.conditions")),
        "the sweep must catch the unguarded read, got {errors:?}"
    );
}
