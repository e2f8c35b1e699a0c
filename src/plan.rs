//! `bkops plan`: what job manifests would do, before they are merged. For every bkops job in the
//! input: the problems the CRD's structural schema, its CEL rules (evaluated here) and the
//! operator's own checks find, each with its field path, and the BlueKing request the operator would send for it, built by the same
//! code and never sent. Nothing here talks to a cluster or to BlueKing.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::connection::BkConnectionSpec;
use crate::bk::{BkClient, PlannedCall};
use crate::controller::connection::client_config;
use crate::run::Defaults;
use crate::run::kinds::{JOB_KINDS, KindEntry};

/// The run key shown in planned requests: the real one starts with the object's uid, which
/// exists only once the object is in the cluster.
pub const PLAN_KEY: &str = "00000000-g1-a1";

/// `bkops plan` options.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 when every job manifest is valid, 1 when any is not, \
    2 when the input cannot be read.\n\nExamples:\n  bkops plan -f examples/\n  \
    kustomize build overlays/prod | bkops plan -f - -o json"
)]
pub struct PlanArgs {
    /// A manifest file, a folder (read recursively: *.yaml, *.yml, *.json), or `-` for stdin.
    /// Multi-document YAML is read document by document. Repeat for more.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// A file with the BkConnection (and, optionally, its Secret) to build requests with, for
    /// jobs whose connection is not in the input.
    #[arg(long)]
    pub connection: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Human)]
    pub output: Format,
}

/// How the plan is printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For people.
    Human,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// One problem, where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The field path (`spec.bkBizId`), or `.` for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// The plan of one job manifest.
#[derive(Clone, Debug, Serialize)]
pub struct JobPlan {
    /// Where it was read from (`file`, `file#2` for the second document).
    pub source: String,
    /// Its kind.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Every problem found; empty when valid.
    pub problems: Vec<Problem>,
    /// The connection the requests were built with, or why a placeholder was used.
    pub connection: String,
    /// The requests the operator would send to create the job (credentials are never shown).
    pub requests: Vec<PlannedCall>,
}

/// The whole plan.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// One entry per job manifest.
    pub jobs: Vec<JobPlan>,
    /// Documents that are not bkops jobs (connections, Secrets, other objects), by kind.
    pub skipped: BTreeMap<String, usize>,
}

impl Plan {
    /// Whether every job manifest is valid.
    pub fn valid(&self) -> bool {
        self.jobs.iter().all(|j| j.problems.is_empty())
    }
}

/// A usage error: the input cannot be read (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs `bkops plan`: prints the plan; `Ok(false)` when a manifest is invalid.
pub async fn run(args: PlanArgs) -> anyhow::Result<bool> {
    let mut docs = Vec::new();
    for f in &args.files {
        docs.extend(read_input(f)?);
    }
    let mut extra = Vec::new();
    if let Some(path) = &args.connection {
        extra = read_input(&path.to_string_lossy())?;
    }
    let plan = plan(&docs, &extra).await;
    match args.output {
        Format::Human => crate::out!("{}", render(&plan))?,
        Format::Json => crate::out!("{}\n", serde_json::to_string_pretty(&plan)?)?,
        Format::Yaml => crate::out!("{}", serde_yaml::to_string(&plan)?)?,
    }
    Ok(plan.valid())
}

/// A document and where it came from; `Err` when it is not YAML.
pub type Doc = (String, Result<Value, String>);

/// Reads `-` (stdin), a file, or a folder (recursively, sorted).
fn read_input(what: &str) -> Result<Vec<Doc>, UsageError> {
    if what == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| UsageError(format!("reading stdin: {e}")))?;
        return Ok(documents("stdin", &text));
    }
    let path = Path::new(what);
    let meta = std::fs::metadata(path).map_err(|e| UsageError(format!("{what}: {e}")))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        collect(path, &mut files).map_err(|e| UsageError(format!("{what}: {e}")))?;
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
        docs.extend(documents(&file.display().to_string(), &text));
    }
    Ok(docs)
}

fn collect(dir: &Path, into: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, into)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            into.push(path);
        }
    }
    Ok(())
}

/// The documents of a multi-document YAML text (empty ones skipped).
pub fn documents(source: &str, text: &str) -> Vec<Doc> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let name = if i == 0 {
            source.to_owned()
        } else {
            format!("{source}#{}", i + 1)
        };
        match Value::deserialize(de) {
            Ok(Value::Null) => {}
            Ok(v) => out.push((name, Ok(v))),
            Err(e) => {
                out.push((name, Err(e.to_string())));
                // A document that does not parse leaves the rest of the stream unreadable.
                break;
            }
        }
    }
    out
}

/// The connections and Secrets of the input, by (namespace, name).
struct Connections<'a> {
    connections: Vec<(&'a Value, BkConnectionSpec)>,
    secrets: Vec<(&'a Value, Secret)>,
}

fn is_bkops(doc: &Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("bkops.io/"))
}

fn meta<'a>(doc: &'a Value, field: &str) -> Option<&'a str> {
    doc["metadata"][field].as_str()
}

impl<'a> Connections<'a> {
    fn of(docs: impl Iterator<Item = &'a Value>) -> Self {
        let mut c = Connections {
            connections: Vec::new(),
            secrets: Vec::new(),
        };
        for doc in docs {
            match (doc["kind"].as_str(), is_bkops(doc)) {
                (Some("BkConnection"), true) => {
                    if let Ok(spec) = serde_json::from_value(doc["spec"].clone()) {
                        c.connections.push((doc, spec));
                    }
                }
                (Some("Secret"), false) => {
                    if let Ok(secret) = serde_json::from_value(doc.clone()) {
                        c.secrets.push((doc, secret));
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// The connection named `name` for a job in `ns`: one in the same namespace, or one without
    /// a namespace when the job has none either.
    fn find(&self, ns: Option<&str>, name: &str) -> Option<(&'a Value, &BkConnectionSpec)> {
        self.connections
            .iter()
            .find(|(doc, _)| meta(doc, "name") == Some(name) && meta(doc, "namespace") == ns)
            .or_else(|| {
                self.connections
                    .iter()
                    .find(|(doc, _)| meta(doc, "name") == Some(name))
            })
            .map(|(doc, spec)| (*doc, spec))
    }

    fn secret(&self, ns: Option<&str>, name: &str) -> Option<&Secret> {
        self.secrets
            .iter()
            .find(|(doc, _)| meta(doc, "name") == Some(name) && meta(doc, "namespace") == ns)
            .or_else(|| {
                self.secrets
                    .iter()
                    .find(|(doc, _)| meta(doc, "name") == Some(name))
            })
            .map(|(_, s)| s)
    }
}

/// A Secret standing in for one the input does not hold: the credentials never matter to a plan,
/// only the user name does (some calls carry it), and that is shown as a placeholder.
fn stand_in_secret() -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": "plan"},
        "stringData": {"bk_app_code": "plan", "bk_app_secret": "plan", "bk_username": "<bk_username>"},
    }))
    .unwrap_or_default()
}

/// A gateway connection for jobs whose connection is not in the input.
fn placeholder_connection() -> Result<BkConnectionSpec, String> {
    serde_json::from_value(json!({
        "gateway": {"urlTemplate": "https://bkapi.example.com/api/{api_name}/", "stage": "prod"},
        "credentialsSecretRef": {"name": "plan"},
    }))
    .map_err(|e| format!("the placeholder connection: {e}"))
}

/// Plans `docs`; `extra` may hold a BkConnection (and Secret) for jobs whose connection is not
/// in `docs`.
pub async fn plan(docs: &[Doc], extra: &[Doc]) -> Plan {
    let values = docs
        .iter()
        .chain(extra)
        .filter_map(|(_, d)| d.as_ref().ok());
    let connections = Connections::of(values);
    let schemas = Schemas::new();
    let mut out = Plan {
        jobs: Vec::new(),
        skipped: BTreeMap::new(),
    };
    for (source, doc) in docs {
        let doc = match doc {
            Ok(d) => d,
            Err(e) => {
                out.jobs.push(JobPlan {
                    source: source.clone(),
                    kind: String::new(),
                    name: String::new(),
                    namespace: None,
                    problems: vec![Problem {
                        path: ".".into(),
                        message: format!("not YAML: {e}"),
                    }],
                    connection: String::new(),
                    requests: Vec::new(),
                });
                continue;
            }
        };
        let kind = doc["kind"].as_str().unwrap_or_default();
        let entry = JOB_KINDS.iter().find(|k| k.name == kind);
        match entry.filter(|_| is_bkops(doc)) {
            Some(entry) => out
                .jobs
                .push(plan_job(source, doc, entry, &connections, &schemas).await),
            None => {
                let label = if kind.is_empty() { "(no kind)" } else { kind };
                *out.skipped.entry(label.to_owned()).or_default() += 1;
            }
        }
    }
    out
}

async fn plan_job(
    source: &str,
    doc: &Value,
    entry: &KindEntry,
    connections: &Connections<'_>,
    schemas: &Schemas,
) -> JobPlan {
    let ns = meta(doc, "namespace");
    let mut plan = JobPlan {
        source: source.to_owned(),
        kind: entry.name.to_owned(),
        name: meta(doc, "name").unwrap_or_default().to_owned(),
        namespace: ns.map(str::to_owned),
        problems: Vec::new(),
        connection: String::new(),
        requests: Vec::new(),
    };
    if plan.name.is_empty() {
        plan.problems.push(Problem {
            path: "metadata.name".into(),
            message: "required".into(),
        });
    }
    plan.problems.extend(schemas.check(entry, doc));
    if let Some(spec) = doc.get("spec") {
        let cel = (entry.cel)(spec).into_vec();
        plan.problems.extend(cel.into_iter().map(|e| Problem {
            path: e.path,
            message: format!("{} (CEL rule)", e.message),
        }));
    }
    match (entry.validate)(doc.clone()) {
        Ok(errors) => plan
            .problems
            .extend(errors.into_vec().into_iter().map(|e| Problem {
                path: e.path,
                message: e.message,
            })),
        Err(e) if plan.problems.is_empty() => plan.problems.push(Problem {
            path: ".".into(),
            message: format!("does not read as {}: {e}", entry.name),
        }),
        Err(_) => {}
    }
    dedup(&mut plan.problems);
    if !plan.problems.is_empty() {
        return plan;
    }
    let connection_name = doc["spec"]["connectionRef"]["name"].as_str();
    let (label, spec, secret) = match connection_name.and_then(|n| connections.find(ns, n)) {
        Some((cdoc, spec)) => {
            let secret_name = &spec.credentials_secret_ref.name;
            let secret = connections
                .secret(meta(cdoc, "namespace"), secret_name)
                .cloned();
            let label = format!(
                "BkConnection {}{}",
                meta(cdoc, "name").unwrap_or_default(),
                if secret.is_some() {
                    ""
                } else {
                    " (its Secret is not in the input: the user name is a placeholder)"
                }
            );
            (label, spec.clone(), secret.unwrap_or_else(stand_in_secret))
        }
        None => match placeholder_connection() {
            Ok(spec) => (
                format!(
                    "placeholder: BkConnection {} is not in the input (pass it with -f or --connection); \
                     gateway URLs under https://bkapi.example.com/",
                    connection_name.unwrap_or("(none named)")
                ),
                spec,
                stand_in_secret(),
            ),
            Err(message) => {
                plan.problems.push(Problem {
                    path: "spec.connectionRef".into(),
                    message,
                });
                return plan;
            }
        },
    };
    plan.connection = label;
    match requests(entry, doc, &spec, &secret).await {
        Ok(calls) => plan.requests = calls,
        Err(problem) => plan.problems.push(problem),
    }
    plan
}

/// The requests the create of `doc` makes through the connection `spec`.
async fn requests(
    entry: &KindEntry,
    doc: &Value,
    spec: &BkConnectionSpec,
    secret: &Secret,
) -> Result<Vec<PlannedCall>, Problem> {
    let connection_problem = |message: String| Problem {
        path: "spec.connectionRef".into(),
        message,
    };
    let (config, defaults): (_, Defaults) =
        client_config("plan", spec, secret).map_err(|e| connection_problem(e.to_string()))?;
    let request = (entry.request)(doc.clone(), PLAN_KEY, &defaults).map_err(|e| Problem {
        path: "spec".into(),
        message: e,
    })?;
    request.validate().map_err(|e| Problem {
        path: "spec".into(),
        message: e.to_string(),
    })?;
    let (client, log) =
        BkClient::recording(config).map_err(|e| connection_problem(e.to_string()))?;
    if let Some(u) = client.unsupported(&request) {
        return Err(connection_problem(u.to_string()));
    }
    // The recording client sends nothing: the create stops at its first call.
    let _ = client.submit(&request).await;
    let calls = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(calls)
}

/// The problems the CRD's structural schema finds (what the API server would refuse).
/// Each job kind's structural schema as a validator, built once per plan.
struct Schemas(BTreeMap<&'static str, Result<jsonschema::Validator, String>>);

impl Schemas {
    fn new() -> Self {
        Schemas(
            JOB_KINDS
                .iter()
                .map(|k| {
                    let validator = crate::schema::json_schema_of(&(k.crd)())
                        .and_then(|s| jsonschema::validator_for(&s).map_err(|e| e.to_string()));
                    (k.name, validator)
                })
                .collect(),
        )
    }

    /// The problems `entry`'s structural schema finds in `doc` (what the API server would
    /// refuse).
    fn check(&self, entry: &KindEntry, doc: &Value) -> Vec<Problem> {
        match self.0.get(entry.name) {
            Some(Ok(validator)) => validator
                .iter_errors(doc)
                .map(|e| Problem {
                    path: pointer_to_path(&e.instance_path().to_string()),
                    message: e.to_string(),
                })
                .collect(),
            Some(Err(e)) => vec![Problem {
                path: ".".into(),
                message: format!("bkops cannot check {}'s schema: {e}", entry.name),
            }],
            None => Vec::new(),
        }
    }
}

/// `/spec/steps/0/x` → `spec.steps[0].x`.
fn pointer_to_path(pointer: &str) -> String {
    let mut path = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.chars().all(|c| c.is_ascii_digit()) {
            path.push_str(&format!("[{part}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&part.replace("~1", "/").replace("~0", "~"));
        }
    }
    if path.is_empty() { ".".into() } else { path }
}

fn dedup(problems: &mut Vec<Problem>) {
    let mut seen = std::collections::BTreeSet::new();
    problems.retain(|p| seen.insert((p.path.clone(), p.message.clone())));
}

/// The plan for people.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for job in &plan.jobs {
        let ns = job
            .namespace
            .as_deref()
            .map(|n| format!(" (namespace {n})"))
            .unwrap_or_default();
        out.push_str(&format!("{}: {} {}{ns}\n", job.source, job.kind, job.name));
        if job.problems.is_empty() {
            out.push_str(&format!("  valid; connection: {}\n", job.connection));
        } else {
            out.push_str("  INVALID\n");
            for p in &job.problems {
                out.push_str(&format!("  - {}: {}\n", p.path, p.message));
            }
        }
        for call in &job.requests {
            out.push_str(&format!(
                "  {} ({}) {} {}\n",
                call.system, call.mode, call.method, call.url
            ));
            if !call.query.is_empty() {
                let q: Vec<String> = call.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("    query: {}\n", q.join("&")));
            }
            if let Some(body) = &call.body {
                let text = serde_json::to_string_pretty(body).unwrap_or_default();
                for line in text.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
    }
    let invalid = plan.jobs.iter().filter(|j| !j.problems.is_empty()).count();
    let skipped: usize = plan.skipped.values().sum();
    out.push_str(&format!(
        "{} job manifest(s), {} invalid; {} other document(s) skipped{}. Requests show run key {PLAN_KEY}: the real key starts with the object's uid.\n",
        plan.jobs.len(),
        invalid,
        skipped,
        if skipped == 0 {
            String::new()
        } else {
            let kinds: Vec<String> = plan
                .skipped
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!(" ({})", kinds.join(", "))
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers_read_as_field_paths() {
        for (pointer, path) in [
            ("", "."),
            ("/spec", "spec"),
            ("/spec/steps/0/scriptTimeout", "spec.steps[0].scriptTimeout"),
            ("/metadata/annotations/a~1b", "metadata.annotations.a/b"),
        ] {
            assert_eq!(pointer_to_path(pointer), path);
        }
    }

    #[test]
    fn documents_are_split_and_a_broken_one_is_reported() {
        let docs = documents("f.yaml", "a: 1\n---\n---\nb: 2\n");
        let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["f.yaml", "f.yaml#3"]);
        let docs = documents("g.yaml", "a: 1\n---\nb: [\n");
        assert!(docs[0].1.is_ok());
        assert!(docs[1].1.is_err(), "{docs:?}");
    }
}
