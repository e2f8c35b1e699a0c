//! Memory of the operator's cache: heap bytes per cached job object (a `DynamicObject` as the
//! watcher decodes it from the API server's JSON) with a realistic status, for growing status
//! (more runs in the history, more failed targets listed) and with or without
//! `metadata.managedFields`. Counts bytes with an instrumented global allocator.
//!
//! `cargo bench --bench cache_memory`.

use std::alloc::System;
use std::sync::Arc;

use chrono::Utc;
use kube::api::DynamicObject;
use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Objects decoded per measurement (bytes are averaged over them).
const OBJECTS: usize = 2000;

/// The JSON the API server sends for object `i` of the benchmark workload after `runs` runs.
fn wire_object(i: usize, runs: usize, failed: usize, managed_fields: bool) -> String {
    let (_, name, mut obj) = bkops::bench::workload::job(i);
    let status = bkops::bench::status::realistic(runs, failed, Utc::now());
    obj["status"] = serde_json::to_value(&status).unwrap_or(Value::Null);
    let meta = &mut obj["metadata"];
    meta["namespace"] = json!("bench-5000");
    meta["uid"] = json!(format!("9c1e7a2b-41f3-4c8e-9a57-{i:012x}"));
    meta["resourceVersion"] = json!("1234567");
    meta["generation"] = json!(runs);
    meta["creationTimestamp"] = json!("2026-11-22T11:00:00Z");
    meta["name"] = json!(name);
    if managed_fields {
        meta["managedFields"] = json!([
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "bkops.io/v1alpha1",
             "time": "2026-11-22T11:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {".": {}, "f:bkBizId": {}, "f:jobObject": {}, "f:jobAction": {},
               "f:expressionScope": {".": {}, "f:bkSetEnv": {}, "f:bkSetName": {}, "f:bkModuleName": {}, "f:bkProcessName": {}},
               "f:activeDeadlineSeconds": {}, "f:retry": {".": {}, "f:limit": {}, "f:backoffSeconds": {}}}}},
            {"manager": "bkops", "operation": "Update", "apiVersion": "bkops.io/v1alpha1",
             "time": "2026-11-22T11:00:30Z", "fieldsType": "FieldsV1", "subresource": "status",
             "fieldsV1": {"f:status": {".": {}, "f:conditions": {}, "f:history": {}, "f:message": {},
               "f:observedGeneration": {}, "f:phase": {},
               "f:run": {".": {}, "f:attempt": {}, "f:completionTime": {}, "f:generation": {}, "f:intentAt": {},
                 "f:jobId": {}, "f:jobUrl": {}, "f:key": {}, "f:phase": {}, "f:reason": {}, "f:specHash": {},
                 "f:startTime": {}, "f:started": {}, "f:submittedAt": {}, "f:summary": {".": {}, "f:succeeded": {}, "f:total": {}},
                 "f:upstreamState": {}, "f:failedTargets": {}}}}},
        ]);
    }
    serde_json::to_string(&obj).unwrap_or_default()
}

/// Heap bytes held per decoded object, and the JSON size.
fn measure(runs: usize, failed: usize, managed_fields: bool) -> (f64, f64) {
    let wire: Vec<String> = (0..OBJECTS)
        .map(|i| wire_object(i, runs, failed, managed_fields))
        .collect();
    let json_bytes = wire.iter().map(String::len).sum::<usize>() as f64 / OBJECTS as f64;
    let region = Region::new(GLOBAL);
    let cache: Vec<Arc<DynamicObject>> = wire
        .iter()
        .filter_map(|w| serde_json::from_str::<DynamicObject>(w).ok())
        .map(Arc::new)
        .collect();
    let change = region.change();
    let held = change.bytes_allocated as f64 - change.bytes_deallocated as f64
        + change.bytes_reallocated as f64;
    let per = held / cache.len().max(1) as f64;
    drop(cache);
    (per, json_bytes)
}

fn main() {
    println!(
        "| runs in history | failed targets listed | managedFields | JSON bytes | heap bytes per cached object | per 5 000 objects (MiB) |"
    );
    println!("| ---: | ---: | :---: | ---: | ---: | ---: |");
    for (runs, failed, managed) in [
        (1, 0, true),
        (1, 0, false),
        (5, 0, true),
        (10, 0, true),
        (10, 20, true),
        (10, 20, false),
    ] {
        let (per, json) = measure(runs, failed, managed);
        println!(
            "| {runs} | {failed} | {} | {json:.0} | {per:.0} | {:.1} |",
            if managed { "yes" } else { "no" },
            per * 5000.0 / (1024.0 * 1024.0)
        );
    }
}
