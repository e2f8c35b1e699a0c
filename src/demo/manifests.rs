//! Manifests as YAML: splitting a file into objects, applying them in a namespace, and the
//! Secret and connections that point the operator at a simulator. The tests use these too.

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde::Deserialize;
use serde_json::Value;

/// The field manager of objects applied by [`apply_yaml`] (not the operator's `bkops`).
pub const APPLY_MANAGER: &str = "bkops-demo";

/// The four job kinds, by manifest `kind`.
pub const JOB_KINDS: [&str; 4] = crate::run::kinds::JOB_KIND_NAMES;

/// Why a manifest could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML.
    #[error("not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A document is not a Kubernetes object bkops knows how to apply.
    #[error("{0}")]
    Invalid(String),
    /// The API server refused an object.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The API server's answer.
        #[source]
        source: kube::Error,
    },
}

/// Splits a multi-document YAML string into objects (empty documents are dropped).
pub fn documents(yaml: &str) -> Result<Vec<Value>, ManifestError> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        out.push(serde_json::to_value(value).map_err(|e| {
            ManifestError::Invalid(format!("a document does not map to JSON: {e}"))
        })?);
    }
    Ok(out)
}

/// The API resource of a manifest `kind`: the four job kinds, `BkConnection` and `Secret`.
pub fn api_resource(kind: &str) -> Option<ApiResource> {
    use crate::api::BkConnection;
    use k8s_openapi::api::core::v1::Secret;
    if let Some(k) = crate::run::kinds::job_kind(kind) {
        return Some((k.resource)());
    }
    Some(match kind {
        "BkConnection" => ApiResource::erase::<BkConnection>(&()),
        "Secret" => ApiResource::erase::<Secret>(&()),
        _ => return None,
    })
}

/// An object's `kind` and `metadata.name`.
pub fn kind_and_name(doc: &Value) -> Result<(&str, &str), ManifestError> {
    let kind = doc["kind"]
        .as_str()
        .ok_or_else(|| ManifestError::Invalid("a document has no `kind`".into()))?;
    let name = doc["metadata"]["name"]
        .as_str()
        .ok_or_else(|| ManifestError::Invalid(format!("a {kind} has no `metadata.name`")))?;
    Ok((kind, name))
}

/// Server-side applies objects in namespace `ns` (whatever namespace they name), forcing
/// ownership of the fields they set; returns the objects as stored.
pub async fn apply_objects(
    client: &kube::Client,
    ns: &str,
    docs: &[Value],
) -> Result<Vec<DynamicObject>, ManifestError> {
    let mut out = Vec::new();
    for doc in docs {
        let mut doc = doc.clone();
        doc["metadata"]["namespace"] = Value::String(ns.to_owned());
        let (kind, name) = kind_and_name(&doc)?;
        let resource = api_resource(kind).ok_or_else(|| {
            ManifestError::Invalid(format!("{kind} {name}: bkops does not apply this kind"))
        })?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        let stored = api
            .patch(
                name,
                &PatchParams::apply(APPLY_MANAGER).force(),
                &Patch::Apply(&doc),
            )
            .await
            .map_err(|source| ManifestError::Apply {
                kind: kind.to_owned(),
                name: name.to_owned(),
                source,
            })?;
        out.push(stored);
    }
    Ok(out)
}

/// Server-side applies every object of `yaml` in namespace `ns`; see [`apply_objects`].
pub async fn apply_yaml(
    client: &kube::Client,
    ns: &str,
    yaml: &str,
) -> Result<Vec<DynamicObject>, ManifestError> {
    apply_objects(client, ns, &documents(yaml)?).await
}

/// This machine's UTC offset as `+HH:MM`: the simulator writes naive times in local time, as
/// BlueKing does, and a connection's `timeZoneOffset` says how to read them.
pub fn local_offset() -> String {
    let secs = chrono::Local::now().offset().local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.abs();
    format!("{sign}{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
}

/// The Secret `blueking-credentials` and two connections to a simulator at `base` (its root
/// URL, ending in `/`), with the simulator's default credentials: `blueking` reaches every
/// system through the API gateway, `blueking-esb` reaches GSEKit, NodeMan and JOB through the
/// legacy ESB (and BKFlow, which has none, through its gateway). These are the names the
/// examples refer to.
pub fn connections_yaml(base: &str) -> String {
    let tz = local_offset();
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: blueking-credentials}}
stringData: {{bk_app_code: bkops, bk_app_secret: bkops-secret, bk_username: admin}}
---
apiVersion: bkops.io/v1alpha1
kind: BkConnection
metadata: {{name: blueking}}
spec:
  gateway: {{urlTemplate: "{base}api/{{api_name}}/", stage: prod}}
  credentialsSecretRef: {{name: blueking-credentials}}
  bkflowSpaceId: 1
  timeZoneOffset: "{tz}"
  rateLimit: {{qps: 200, burst: 200, maxInFlight: 32}}
---
apiVersion: bkops.io/v1alpha1
kind: BkConnection
metadata: {{name: blueking-esb}}
spec:
  esbUrl: "{base}"
  gsekit: {{mode: esb}}
  nodeman: {{mode: esb}}
  job: {{mode: esb}}
  bkflow: {{url: "{base}api/bk-flow/prod/"}}
  credentialsSecretRef: {{name: blueking-credentials}}
  bkflowSpaceId: 1
  timeZoneOffset: "{tz}"
  rateLimit: {{qps: 200, burst: 200, maxInFlight: 32}}
"#
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn documents_skip_empty_ones() {
        let docs = documents("---\na: 1\n---\n---\nb: [2]\n").unwrap();
        assert_eq!(
            docs,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": [2]})]
        );
        assert!(documents("a: [").is_err());
    }

    #[test]
    fn connections_parse_and_name_what_the_examples_use() {
        let docs = documents(&connections_yaml("http://127.0.0.1:1/")).unwrap();
        let names: Vec<_> = docs.iter().map(|d| kind_and_name(d).unwrap()).collect();
        assert_eq!(
            names,
            [
                ("Secret", "blueking-credentials"),
                ("BkConnection", "blueking"),
                ("BkConnection", "blueking-esb")
            ]
        );
        for doc in &docs[1..] {
            let conn: crate::api::BkConnection = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(
                conn.spec.credentials_secret_ref.name,
                "blueking-credentials"
            );
        }
        assert!(api_resource("Secret").is_some() && api_resource("Pod").is_none());
    }

    #[test]
    fn offset_looks_like_one() {
        let o = local_offset();
        assert_eq!(o.len(), 6);
        assert!(o.starts_with('+') || o.starts_with('-'));
        assert_eq!(&o[3..4], ":");
    }
}
