//! The chart in `charts/bkops` as Helm itself sees it: linted, schema-checked and rendered by
//! Helm v4's Go SDK (through `hack/helm.py` and the `helm-python-sdk` venv that
//! `hack/provision-helm.sh` makes), and the rendered objects applied to the test API server.
//!
//! ```ignore
//! mod support;
//! use support::helm;
//!
//! let rendered = helm::render(&serde_json::json!({"watchNamespaces": [ns]}), "bkops", ns)
//!     .expect("renders");
//! let role = rendered.get("Role", "bkops");
//! helm::apply(&client, rendered.objects.iter()).await.expect("applies");
//! ```
//!
//! Each render starts the helper once (a Python process loading Helm's Go runtime, about 0.3 s);
//! [`render`] keeps every result for the life of the test binary, so a value set renders once.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::Scope;
use serde_json::Value;

/// The chart, relative to the crate root.
pub const CHART: &str = "charts/bkops";
/// The field manager of [`apply`].
pub const FIELD_MANAGER: &str = "bkops-chart-test";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The venv's python, provisioned on first use unless `BKOPS_NO_PROVISION` is set (as
/// `hack/test.sh` sets it after provisioning).
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let cache = std::env::var_os("BKOPS_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/bkops")))
            .ok_or("neither BKOPS_CACHE_DIR nor HOME is set")?;
        let python = cache.join("helm-venv/bin/python");
        if python.exists() {
            return Ok(python);
        }
        if std::env::var_os("BKOPS_NO_PROVISION").is_some() {
            return Err(format!(
                "{} is missing and BKOPS_NO_PROVISION is set: run hack/provision-helm.sh",
                python.display()
            ));
        }
        let status = Command::new("bash")
            .arg(root().join("hack/provision-helm.sh"))
            .arg(&cache)
            .status()
            .map_err(|e| format!("running hack/provision-helm.sh: {e}"))?;
        if !status.success() || !python.exists() {
            return Err(format!("hack/provision-helm.sh failed ({status})"));
        }
        Ok(python)
    });
    match found {
        Ok(p) => p,
        Err(e) => panic!("Helm's engine is not available: {e}"),
    }
}

/// Runs `hack/helm.py ARGS CHART` with `stdin`; Ok(stdout) on success, Err(stderr) otherwise.
fn helper(args: &[&str], stdin: &str) -> Result<String, String> {
    let mut child = Command::new(python())
        .arg(root().join("hack/helm.py"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting hack/helm.py: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("writing to hack/helm.py");
    let out = child.wait_with_output().expect("hack/helm.py ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Ok(stdout),
        Some(1) => Err(if stderr.is_empty() { stdout } else { stderr }),
        _ => panic!("hack/helm.py {args:?} failed ({}): {stderr}", out.status),
    }
}

/// `helm lint --strict` of the chart with `values` for Kubernetes `kube_version`: Ok(report)
/// when clean (info messages only), Err(report or message) otherwise.
pub fn lint(values: &Value, kube_version: &str) -> Result<Value, String> {
    let report = helper(
        &[
            "lint",
            CHART,
            "--strict",
            "--namespace",
            "bkops-system",
            "--kube-version",
            kube_version,
            "-f",
            "-",
        ],
        &values.to_string(),
    )?;
    Ok(serde_json::from_str(&report).expect("lint prints JSON"))
}

/// Helm's check of `values` (merged over the chart's defaults) against `values.schema.json`.
pub fn validate(values: &Value) -> Result<(), String> {
    helper(&["validate", CHART, "-f", "-"], &values.to_string()).map(drop)
}

/// The chart as rendered for an install of release `release` into `namespace` with `values`.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The YAML stream, as `helm template` prints it.
    pub manifest: String,
    /// Its objects.
    pub objects: Vec<Value>,
}

impl Rendered {
    fn parse(manifest: String) -> Rendered {
        let objects = bkops::demo::documents(&manifest)
            .unwrap_or_else(|e| panic!("the rendered chart is not YAML: {e}\n{manifest}"));
        Rendered { manifest, objects }
    }

    /// Objects of `kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The object of `kind` named `name` (in any namespace), if rendered.
    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// The object of `kind` named `name`; panics when it was not rendered.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| {
            panic!(
                "no {kind} {name} rendered; have {:?}",
                self.objects
                    .iter()
                    .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
                    .collect::<Vec<_>>()
            )
        })
    }

    /// The one object of `kind`, typed; panics unless exactly one was rendered.
    pub fn one<K: serde::de::DeserializeOwned>(&self, kind: &str) -> K {
        let all = self.of_kind(kind);
        assert_eq!(all.len(), 1, "want one {kind}, rendered {}", all.len());
        serde_json::from_value(all[0].clone())
            .unwrap_or_else(|e| panic!("the rendered {kind} does not parse: {e}"))
    }
}

/// One render of [`render_batch`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct RenderRequest {
    /// Values over the chart's defaults.
    pub values: Value,
    /// Release name.
    pub name: String,
    /// Release namespace.
    pub namespace: String,
}

/// Renders (with [`RenderRequest`]'s values, release and namespace) through Helm, once per
/// distinct request in this test binary; Err holds Helm's message (schema violations, `fail`).
pub fn render(values: &Value, release: &str, namespace: &str) -> Result<Rendered, String> {
    render_batch(&[RenderRequest {
        values: values.clone(),
        name: release.to_owned(),
        namespace: namespace.to_owned(),
    }])
    .remove(0)
}

/// Many renders in one start of the helper; results are kept like [`render`]'s.
pub fn render_batch(requests: &[RenderRequest]) -> Vec<Result<Rendered, String>> {
    type Cache = Mutex<HashMap<String, Result<Rendered, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = |r: &RenderRequest| serde_json::to_string(r).expect("request to JSON");
    let missing: Vec<&RenderRequest> = {
        let known = cache.lock().expect("render cache");
        let mut seen = std::collections::HashSet::new();
        requests
            .iter()
            .filter(|r| !known.contains_key(&key(r)) && seen.insert(key(r)))
            .collect()
    };
    if !missing.is_empty() {
        let input = serde_json::to_string(&missing).expect("requests to JSON");
        let out = helper(&["template-batch", CHART], &input)
            .unwrap_or_else(|e| panic!("hack/helm.py template-batch failed: {e}"));
        let results: Vec<Value> = serde_json::from_str(&out).expect("template-batch prints JSON");
        assert_eq!(results.len(), missing.len(), "one result per render");
        let mut known = cache.lock().expect("render cache");
        for (request, result) in missing.iter().zip(results) {
            let rendered = match (&result["manifest"], &result["error"]) {
                (Value::String(m), _) => Ok(Rendered::parse(m.clone())),
                (_, Value::String(e)) => Err(e.clone()),
                _ => panic!("unexpected template-batch result {result}"),
            };
            known.insert(key(request), rendered);
        }
    }
    let known = cache.lock().expect("render cache");
    requests.iter().map(|r| known[&key(r)].clone()).collect()
}

/// Why [`apply`] could not apply an object.
#[derive(Debug)]
pub enum ApplyError {
    /// The API server does not serve the object's group, version and kind (e.g. a CRD that is
    /// not installed).
    NotServed(GroupVersionKind, kube::Error),
    /// The server refused it.
    Refused(String, kube::Error),
}

/// The group, version and kind of a rendered object.
pub fn gvk(object: &Value) -> GroupVersionKind {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let kind = object["kind"].as_str().expect("kind");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

/// Server-side applies rendered objects as they are (each in the namespace it names), as
/// Helm 4 does, forcing ownership; returns them as stored.
pub async fn apply<'a>(
    client: &kube::Client,
    objects: impl IntoIterator<Item = &'a Value>,
) -> Result<Vec<DynamicObject>, ApplyError> {
    let mut out = Vec::new();
    for object in objects {
        let gvk = gvk(object);
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(|e| ApplyError::NotServed(gvk.clone(), e))?;
        let name = object["metadata"]["name"].as_str().expect("metadata.name");
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = object["metadata"]["namespace"].as_str().unwrap_or_else(|| {
                    panic!("the rendered {} {name} names no namespace", gvk.kind)
                });
                Api::namespaced_with(client.clone(), ns, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let stored = api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await
            .map_err(|e| ApplyError::Refused(format!("{} {name}", gvk.kind), e))?;
        out.push(stored);
    }
    Ok(out)
}
