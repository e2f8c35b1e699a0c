//! The operator's cached copy of a job object: its metadata read, its spec and status kept as
//! JSON text.
//!
//! Why not kube's `DynamicObject`: it decodes the whole object into a `serde_json::Value`, and
//! serde_json refuses a document nesting deeper than 128 levels. A Taskflow `pipelineTree` may
//! nest that deep (the API server stores it: it is free-form), and one such object failed every
//! list and watch of its kind, so no Taskflow applied afterwards was ever processed. Here the
//! spec and status are only scanned (serde_json skips a value without recursing), and the
//! managed fields, which mirror the spec's shape, are skipped the same way. The reconcile then
//! reads the spec into its kind's type, where a document too deep for the decoder is one
//! object's `MalformedObject`, not its kind's outage.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::core::{DynamicResourceScope, Resource};
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// A job object as the watch delivers it.
#[derive(Clone, Debug)]
pub struct CachedObject {
    /// `apiVersion`, when sent.
    pub api_version: Option<String>,
    /// `kind`, when sent.
    pub kind: Option<String>,
    /// Metadata, without `managedFields` (nothing reads them).
    pub metadata: ObjectMeta,
    /// The spec as JSON text.
    pub spec: Option<Box<RawValue>>,
    /// The status as JSON text.
    pub status: Option<Box<RawValue>>,
}

impl CachedObject {
    /// An empty object named `name` (tests and tools).
    pub fn new(name: &str) -> Self {
        CachedObject {
            api_version: None,
            kind: None,
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: None,
        }
    }

    /// The status read as `T`; `None` without a status, `Some(Err)` when it does not read as `T`.
    pub fn status_as<T: DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.status
            .as_ref()
            .map(|raw| serde_json::from_str(raw.get()))
    }

    /// The object read as `T`, with the path of the field that does not fit in the error
    /// (`spec.bkBizId: invalid type ...`).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        let mut de = serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let what = if inner.to_string().starts_with("recursion limit exceeded") {
                format!("nests more than {MAX_DEPTH} levels deep, more than bkops reads ({inner})")
            } else {
                inner.to_string()
            };
            if path == "." {
                what
            } else {
                format!("{}: {what}", short_path(&path))
            }
        })
    }
}

/// A field path cut to a length a message can carry (a path into a deep tree is long).
fn short_path(path: &str) -> String {
    const MAX: usize = 120;
    match path.char_indices().nth(MAX) {
        None => path.to_owned(),
        Some((cut, _)) => format!("{}…", &path[..cut]),
    }
}

/// serde_json's nesting limit, which the parse of a cached object into its kind meets.
pub const MAX_DEPTH: usize = 128;

impl Resource for CachedObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Serialize for CachedObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if let Some(v) = &self.api_version {
            map.serialize_entry("apiVersion", v)?;
        }
        if let Some(k) = &self.kind {
            map.serialize_entry("kind", k)?;
        }
        map.serialize_entry("metadata", &self.metadata)?;
        if let Some(spec) = &self.spec {
            map.serialize_entry("spec", spec)?;
        }
        if let Some(status) = &self.status {
            map.serialize_entry("status", status)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for CachedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = CachedObject;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CachedObject, A::Error> {
        let mut obj = CachedObject::new("");
        obj.metadata = ObjectMeta::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "apiVersion" => obj.api_version = map.next_value()?,
                "kind" => obj.kind = map.next_value()?,
                "metadata" => obj.metadata = map.next_value::<Metadata>()?.0,
                "spec" => obj.spec = Some(map.next_value()?),
                "status" => obj.status = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(obj)
    }
}

/// `ObjectMeta` read without its `managedFields`: each of their `fieldsV1` mirrors the shape of
/// the fields its manager set, as deep as the spec.
struct Metadata(ObjectMeta);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetaVisitor;
        impl<'de> Visitor<'de> for MetaVisitor {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("object metadata")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut fields = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "managedFields" {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        let value = map.next_value::<serde_json::Value>()?;
                        fields.insert(key, value);
                    }
                }
                ObjectMeta::deserialize(serde_json::Value::Object(fields))
                    .map(Metadata)
                    .map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_map(MetaVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Taskflow;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    }

    fn taskflow_json(tree: &str) -> String {
        format!(
            r#"{{"apiVersion":"bkops.io/v1alpha1","kind":"Taskflow",
              "metadata":{{"name":"t","namespace":"n","uid":"u1","generation":2,
                "managedFields":[{{"manager":"kubectl","fieldsV1":{deep}}}]}},
              "spec":{{"creator":"admin","pipelineTree":{tree}}},
              "status":{{"phase":"Running","message":"job 7 running"}}}}"#,
            deep = nested(400),
        )
    }

    #[test]
    fn a_tree_too_deep_to_decode_is_cached_and_reported_as_one_objects_problem() {
        let text = taskflow_json(&nested(300));
        // What the watch decodes: kube's own object fails here, ours does not.
        assert!(serde_json::from_str::<kube::api::DynamicObject>(&text).is_err());
        let obj: CachedObject = serde_json::from_str(&text).expect("cached");
        assert_eq!(obj.metadata.name.as_deref(), Some("t"));
        assert_eq!(obj.metadata.generation, Some(2));
        assert!(obj.metadata.managed_fields.is_none());
        let err = obj.parse::<Taskflow>().expect_err("too deep for the kind");
        assert!(err.starts_with("spec.pipelineTree.a.a.a"), "{err}");
        assert!(err.len() < 400, "the path is cut: {err}");
        assert!(err.contains("nests more than 128 levels deep"), "{err}");
    }

    #[test]
    fn a_shallow_object_reads_as_its_kind_and_round_trips() {
        let text = taskflow_json(&nested(20));
        let obj: CachedObject = serde_json::from_str(&text).expect("cached");
        let typed = obj.parse::<Taskflow>().expect("reads");
        assert_eq!(typed.metadata.uid.as_deref(), Some("u1"));
        assert!(typed.spec.pipeline_tree.is_some());
        let back: CachedObject =
            serde_json::from_str(&serde_json::to_string(&obj).expect("serializes")).expect("reads");
        assert_eq!(
            back.spec.as_ref().map(|s| s.get()),
            obj.spec.as_ref().map(|s| s.get())
        );
        let status: serde_json::Value = obj.status_as().expect("status").expect("reads");
        assert_eq!(status["message"], "job 7 running");
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let obj: CachedObject = serde_json::from_str(
            r#"{"metadata":{"name":"t"},"spec":{"pipelineTree":{},"spaceId":"x"}}"#,
        )
        .expect("cached");
        let err = obj.parse::<Taskflow>().expect_err("wrong type");
        assert!(err.starts_with("spec.spaceId"), "{err}");
    }
}
