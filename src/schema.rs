//! JSON Schemas of the kinds, from the same generated CRDs the cluster gets, for kubeconform and
//! editors: `bkops schema --out-dir DIR` writes `DIR/<kind>_<version>.json` (kind in lower case),
//! the names kubeconform finds with
//! `-schema-location default -schema-location 'DIR/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'`.
//!
//! A CRD's `openAPIV3Schema` is OpenAPI, not JSON Schema: `nullable: true` becomes a `null` in the
//! field's types here, and `apiVersion` and `kind` are pinned, so a manifest of another kind never
//! passes as this one. The CRDs' CEL rules are not JSON Schema and are not carried over.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::crdgen::CrdKind;

/// The JSON Schema of `kind`'s served version.
pub fn json_schema(kind: CrdKind) -> Result<Value, String> {
    json_schema_of(&kind.crd())
}

/// The JSON Schema of `crd`'s served version.
pub fn json_schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<Value, String> {
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.served)
        .ok_or_else(|| format!("{} serves no version", crd.spec.names.kind))?;
    let openapi = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| format!("{} has no schema", crd.spec.names.kind))?;
    let mut schema = serde_json::to_value(openapi).map_err(|e| e.to_string())?;
    to_json_schema(&mut schema);
    let api_version = format!("{}/{}", crd.spec.group, version.name);
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "apiVersion".into(),
            json!({"type": "string", "enum": [api_version]}),
        );
        props.insert(
            "kind".into(),
            json!({"type": "string", "enum": [crd.spec.names.kind]}),
        );
    }
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-07/schema#"),
        );
        obj.insert(
            "title".into(),
            json!(format!("{} ({api_version})", crd.spec.names.kind)),
        );
        let required = obj.entry("required").or_insert_with(|| json!([]));
        if let Some(list) = required.as_array_mut() {
            for field in ["apiVersion", "kind"] {
                if !list.iter().any(|f| f == field) {
                    list.push(json!(field));
                }
            }
        }
    }
    Ok(schema)
}

/// The file name kubeconform's `{{.ResourceKind}}_{{.ResourceAPIVersion}}.json` looks for.
pub fn file_name(kind: CrdKind) -> String {
    let crd = kind.crd();
    let version = crd
        .spec
        .versions
        .first()
        .map(|v| v.name.clone())
        .unwrap_or_default();
    format!("{}_{version}.json", crd.spec.names.kind.to_lowercase())
}

/// Writes every kind's schema into `dir` (created if missing); returns the paths written.
pub fn write_dir(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for kind in CrdKind::ALL {
        let schema = json_schema(kind).map_err(anyhow::Error::msg)?;
        let path = dir.join(file_name(kind));
        std::fs::write(&path, serde_json::to_string_pretty(&schema)? + "\n")?;
        written.push(path);
    }
    Ok(written)
}

/// OpenAPI's `nullable: true` as JSON Schema: `null` joins the field's type (and its enum).
fn to_json_schema(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                allow_null(map);
            }
            for sub in map.values_mut() {
                to_json_schema(sub);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_json_schema),
        _ => {}
    }
}

fn allow_null(map: &mut Map<String, Value>) {
    if let Some(Value::String(t)) = map.get("type") {
        let t = t.clone();
        map.insert("type".into(), json!([t, "null"]));
    }
    if let Some(Value::Array(values)) = map.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_becomes_a_null_type_and_enum_member() {
        let mut v = json!({"properties": {
            "a": {"type": "integer", "nullable": true},
            "b": {"type": "string", "enum": ["X"], "nullable": true},
            "c": {"type": "string"},
        }});
        to_json_schema(&mut v);
        assert_eq!(v["properties"]["a"], json!({"type": ["integer", "null"]}));
        assert_eq!(
            v["properties"]["b"],
            json!({"type": ["string", "null"], "enum": ["X", null]})
        );
        assert_eq!(v["properties"]["c"], json!({"type": "string"}));
    }

    #[test]
    fn each_kind_has_a_file_kubeconform_finds_and_pins_its_kind() {
        assert_eq!(file_name(CrdKind::ProcessJob), "processjob_v1alpha1.json");
        for kind in CrdKind::ALL {
            let schema = json_schema(kind).expect("a schema");
            let name = kind.crd().spec.names.kind;
            assert_eq!(schema["properties"]["kind"]["enum"], json!([name]));
            assert!(!schema.to_string().contains("\"nullable\""), "{name}");
        }
    }
}
