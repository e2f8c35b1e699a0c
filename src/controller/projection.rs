//! What the cache keeps of each job object. Finished jobs stay in the cluster for years (GitOps
//! keeps them in git), and every one sits in the operator's cache: a settled object (its run is
//! over and answers what the object asks, nothing to do until it changes; see
//! [`crate::run::act::settled`]) is kept as a projection — its metadata and the few status
//! fields the operator reads from the cache (phase, run key, phase and job id, the job ids of its
//! history) — without its spec. Any change to it comes with the whole object in the watch event,
//! and is decided on that.
//!
//! kubectl's `last-applied-configuration` annotation (the whole manifest again) is dropped from
//! every cached object: nothing reads it.

use serde_json::json;
use serde_json::value::RawValue;

use super::cached::CachedObject;
use crate::run::JobKind;
use crate::run::act::settled;

/// kubectl's copy of the applied manifest.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether `obj` is a projection of a settled object (a job object always has a spec).
pub fn is_projection(obj: &CachedObject) -> bool {
    obj.spec.is_none()
}

/// The cache's copy of `obj` (of kind `K`), at `now`.
pub fn for_cache<K: JobKind>(
    mut obj: CachedObject,
    now: chrono::DateTime<chrono::Utc>,
) -> CachedObject {
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            obj.metadata.annotations = None;
        }
    }
    if obj.spec.is_none() {
        return obj;
    }
    let Ok(typed) = obj.parse::<K>() else {
        return obj;
    };
    if !settled(&typed, now) {
        return obj;
    }
    let Some(status) = typed.job_status() else {
        return obj;
    };
    let run = status
        .run
        .as_ref()
        .map(|r| json!({"key": r.key, "phase": r.phase, "jobId": r.job_id}));
    let history: Vec<_> = status
        .history
        .iter()
        .map(|h| json!({"key": h.key, "phase": h.phase, "jobId": h.job_id}))
        .collect();
    let projection = json!({
        "phase": status.phase,
        "observedGeneration": status.observed_generation,
        "run": run,
        "history": history,
    });
    match RawValue::from_string(projection.to_string()) {
        Ok(raw) => {
            obj.spec = None;
            obj.status = Some(raw);
            obj
        }
        Err(_) => obj,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ProcessJob;

    fn object(status: serde_json::Value, extra_meta: serde_json::Value) -> CachedObject {
        let mut meta = json!({
            "name": "restart", "namespace": "ops", "uid": "u1", "generation": 1,
            "resourceVersion": "7", "finalizers": ["bkops.io/cleanup"],
            "annotations": {LAST_APPLIED: "{\"a very\": \"long manifest\"}", "team": "web"},
        });
        if let (Some(m), Some(extra)) = (meta.as_object_mut(), extra_meta.as_object()) {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
        let spec = json!({"bkBizId": 2, "jobObject": "process", "jobAction": "restart",
            "scope": {"bkSetEnv": "3"}});
        let mut whole = json!({
            "apiVersion": "bkops.io/v1alpha1", "kind": "ProcessJob",
            "metadata": meta, "spec": spec, "status": status,
        });
        // The run answers the spec as the operator hashes it.
        let typed: ProcessJob = serde_json::from_value(whole.clone()).expect("a ProcessJob");
        if let Some(run) = whole["status"].get_mut("run") {
            run["specHash"] = json!(crate::run::spec_hash(&typed.spec_json()));
        }
        serde_json::from_value(whole).expect("an object")
    }

    fn run(phase: &str) -> serde_json::Value {
        json!({"key": "u1-g1-a1", "generation": 1, "attempt": 1, "phase": phase,
               "jobId": "10", "specHash": ""})
    }

    fn done() -> serde_json::Value {
        json!({"observedGeneration": 1, "phase": "Succeeded", "run": run("Succeeded"),
               "history": [{"key": "u1-g1-a1", "jobId": "10", "phase": "Succeeded"}],
               "message": "a long message", "conditions": []})
    }

    #[test]
    fn a_settled_object_is_kept_as_a_small_projection() {
        let now = chrono::Utc::now();
        let full = object(done(), json!({}));
        let before = serde_json::to_string(&full).expect("json").len();
        let cached = for_cache::<ProcessJob>(full, now);
        assert!(is_projection(&cached));
        let after = serde_json::to_string(&cached).expect("json").len();
        assert!(cached.spec.is_none());
        assert!(after < before, "{after} of {before} bytes");
        let annotations = cached.metadata.annotations.clone().unwrap_or_default();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations.get("team").map(String::as_str), Some("web"));
        let status: serde_json::Value = cached.status_as().expect("status").expect("json");
        assert_eq!(status["phase"], "Succeeded");
        assert_eq!(status["run"]["jobId"], "10");
        assert_eq!(status["history"][0]["jobId"], "10");
        assert!(status.get("message").is_none());
    }

    #[test]
    fn objects_with_something_to_do_are_kept_whole() {
        let now = chrono::Utc::now();
        let cases = [
            // A run in flight.
            (
                "running",
                object(
                    json!({"observedGeneration": 1, "phase": "Running", "run": run("Running")}),
                    json!({}),
                ),
            ),
            // A new generation not yet seen.
            ("new generation", object(done(), json!({"generation": 2}))),
            // A rerun asked for.
            (
                "rerun",
                object(
                    done(),
                    json!({"annotations": {"bkops.io/rerun-requested-at": "now"}}),
                ),
            ),
            // Being deleted.
            (
                "deleting",
                object(done(), json!({"deletionTimestamp": "2026-12-03T10:00:00Z"})),
            ),
            // Never ran.
            ("no run", object(json!({}), json!({}))),
        ];
        for (what, obj) in cases {
            let cached = for_cache::<ProcessJob>(obj, now);
            assert!(!is_projection(&cached), "{what}");
            assert!(
                cached
                    .metadata
                    .annotations
                    .as_ref()
                    .is_none_or(|a| !a.contains_key(LAST_APPLIED)),
                "{what}: kubectl's copy is dropped from every object"
            );
        }
    }
}
