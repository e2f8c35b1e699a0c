//! Memory of the operator's cache: heap bytes per cached job object, for growing status (more
//! runs in the history, more failed targets listed) and with or without
//! `metadata.managedFields`. Each object is decoded from the JSON the API server sends and kept
//! the way the operator's watch keeps it (`run_kind` in `src/controller/mod.rs`):
//!
//! - a job whose run is in flight as a whole `Arc<CachedObject>` (spec and status as JSON text,
//!   managedFields skipped, `src/controller/cached.rs`);
//! - a finished job (its run final, its status speaking for its generation) as the projection
//!   `projection::for_cache` keeps of a settled object, without the spec
//!   (`src/controller/projection.rs`); finished jobs are the ones that pile up, hence the MiB per
//!   20 000 of them;
//! - for reference, the finished job as a `DynamicObject`, what a plain kube watcher holds.
//!
//! The JSON bytes are the finished job's. Both stages carry the same spec, metadata and history
//! (the running one without its current run in the history).
//!
//! The bench panics if an object is not cached as it claims to measure (a finished job kept
//! whole, a running one projected). Counts bytes with an instrumented global allocator: the bytes
//! each object holds, not the store's map around them nor the allocator's own overhead.
//!
//! `cargo bench --bench cache_memory`.

use std::alloc::System;
use std::sync::Arc;

use bkops::api::common::FINALIZER;
use bkops::api::{AgentJob, ExecuteJob, JobStatus, ProcessJob, Taskflow};
use bkops::bk::facade::{self, JobPhase, Progress, Summary};
use bkops::controller::cached::CachedObject;
use bkops::controller::projection;
use bkops::run::JobKind;
use bkops::run::status::{apply_progress, render};
use chrono::{DateTime, Utc};
use kube::api::DynamicObject;
use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Objects decoded per measurement (bytes are averaged over them).
const OBJECTS: usize = 2000;

/// Finished objects the last column scales to.
const FINISHED: f64 = 20_000.0;

/// Where an object's latest run stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    /// Its job created in BlueKing and followed.
    Running,
    /// Over, and the status says so for the object's generation.
    Finished,
}

/// The operator's generic code for one kind, made concrete (the controller runs one per kind).
struct Kind {
    name: &'static str,
    /// The spec hash the operator records in a run of this manifest.
    spec_hash: fn(&Value) -> String,
    /// What the watch keeps of a decoded object.
    for_cache: fn(CachedObject, DateTime<Utc>) -> CachedObject,
}

const fn kind_of<K: JobKind>() -> Kind {
    Kind {
        name: K::NAME,
        spec_hash: spec_hash::<K>,
        for_cache: projection::for_cache::<K>,
    }
}

/// The kinds the workload cycles through.
const KINDS: [Kind; 4] = [
    kind_of::<ProcessJob>(),
    kind_of::<Taskflow>(),
    kind_of::<AgentJob>(),
    kind_of::<ExecuteJob>(),
];

fn kind_named(name: &str) -> &'static Kind {
    KINDS
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("the workload makes a {name}, which this bench does not know"))
}

/// The hash is of the spec as the kind reads it, so a run made for the manifest answers it.
fn spec_hash<K: JobKind>(manifest: &Value) -> String {
    let typed: K = serde_json::from_value(manifest.clone())
        .unwrap_or_else(|e| panic!("the workload's {} does not read: {e}", K::NAME));
    bkops::run::spec_hash(&typed.spec_json())
}

/// One object as the API server sends it.
struct Wire {
    kind: &'static Kind,
    json: String,
}

/// The realistic status after `runs` runs, made to speak for the object's `generation` and its
/// spec: otherwise the operator would see a spec change to run, and keep the object whole.
fn finished(runs: usize, failed: usize, generation: i64, spec_hash: String) -> JobStatus {
    let mut status = bkops::bench::status::realistic(runs, failed, Utc::now());
    status.observed_generation = Some(generation);
    for c in &mut status.conditions {
        c.observed_generation = Some(generation);
    }
    if let Some(run) = status.run.as_mut() {
        run.generation = generation;
        run.spec_hash = spec_hash;
    }
    status
}

/// `done` with its latest run back in flight, as the operator writes it after a poll that found
/// the job running with some targets done: the run out of the history, its failed targets listed
/// so far.
fn in_flight(done: &JobStatus, generation: i64, now: DateTime<Utc>) -> JobStatus {
    let mut before = done.clone();
    let Some(mut run) = before.run.take() else {
        panic!("the realistic status has no run");
    };
    before.history.retain(|h| h.key != run.key);
    run.completion_time = None;
    let failed = run.failed_targets.len() as u32;
    let progress = Progress {
        phase: JobPhase::Running,
        upstream_state: "RUNNING".to_owned(),
        summary: Summary {
            total: failed + 2,
            succeeded: 1,
            failed,
            running: 1,
            ..Summary::default()
        },
        failed_targets: run
            .failed_targets
            .iter()
            .map(|t| facade::FailedTarget {
                target: t.target.clone(),
                reason: t.reason.clone(),
            })
            .collect(),
        message: None,
        started_at: run.start_time,
        finished_at: None,
    };
    let (run, message) = apply_progress(&run, &progress, now);
    let why = run.reason.clone().unwrap_or_default();
    render(
        &before,
        generation,
        run.phase,
        &why,
        message,
        Some(run),
        now,
    )
}

/// The JSON the API server sends for object `i` of the benchmark workload after `runs` runs,
/// the latest at `stage`.
fn wire_object(i: usize, runs: usize, failed: usize, managed_fields: bool, stage: Stage) -> Wire {
    let (kind_name, name, mut obj) = bkops::bench::workload::job(i);
    let kind = kind_named(kind_name);
    let generation = runs.max(1) as i64;
    let now = Utc::now();
    let done = finished(runs, failed, generation, (kind.spec_hash)(&obj));
    let status = match stage {
        Stage::Finished => done,
        Stage::Running => in_flight(&done, generation, now),
    };
    obj["status"] = serde_json::to_value(&status).unwrap_or(Value::Null);
    let meta = &mut obj["metadata"];
    meta["namespace"] = json!("bench-5000");
    meta["uid"] = json!(format!("9c1e7a2b-41f3-4c8e-9a57-{i:012x}"));
    meta["resourceVersion"] = json!("1234567");
    meta["generation"] = json!(generation);
    meta["creationTimestamp"] = json!("2026-11-22T11:00:00Z");
    meta["name"] = json!(name);
    // The operator adds it before the first run.
    meta["finalizers"] = json!([FINALIZER]);
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
    Wire {
        kind,
        json: serde_json::to_string(&obj).unwrap_or_default(),
    }
}

/// Heap bytes held per object that `keep` makes of each of `wire`.
fn held_per_object<T>(wire: &[Wire], keep: impl Fn(&Wire) -> T) -> f64 {
    // Allocated before counting: the bytes are the objects', not the list's.
    let mut kept = Vec::with_capacity(wire.len());
    let region = Region::new(GLOBAL);
    for w in wire {
        kept.push(keep(w));
    }
    let change = region.change();
    // stats_alloc already counts a realloc's growth as allocated and its shrinking as
    // deallocated (`bytes_reallocated` is their net, not a further amount).
    let held = change.bytes_allocated as f64 - change.bytes_deallocated as f64;
    drop(kept);
    held / wire.len().max(1) as f64
}

/// The operator's cached copy of `w`, checked to be at `stage`.
fn cached(w: &Wire, stage: Stage, now: DateTime<Utc>) -> Arc<CachedObject> {
    let obj: CachedObject = serde_json::from_str(&w.json)
        .unwrap_or_else(|e| panic!("a {} does not decode as CachedObject: {e}", w.kind.name));
    let obj = (w.kind.for_cache)(obj, now);
    let projected = projection::is_projection(&obj);
    match stage {
        Stage::Finished if !projected => panic!(
            "a finished {} is cached whole, not as a projection: the bench's status does not \
             settle it (run final, observedGeneration == generation, spec hash answered)",
            w.kind.name
        ),
        Stage::Running if projected => {
            panic!("a running {} is cached as a projection", w.kind.name)
        }
        _ => Arc::new(obj),
    }
}

/// One row of the table.
struct Row {
    json_bytes: f64,
    dynamic: f64,
    running: f64,
    finished: f64,
}

fn measure(runs: usize, failed: usize, managed_fields: bool) -> Row {
    let objects = |stage| -> Vec<Wire> {
        (0..OBJECTS)
            .map(|i| wire_object(i, runs, failed, managed_fields, stage))
            .collect()
    };
    let running = objects(Stage::Running);
    let finished = objects(Stage::Finished);
    let now = Utc::now();
    let json_bytes = finished.iter().map(|w| w.json.len()).sum::<usize>() as f64 / OBJECTS as f64;
    Row {
        json_bytes,
        dynamic: held_per_object(&finished, |w| {
            let obj: DynamicObject = serde_json::from_str(&w.json)
                .unwrap_or_else(|e| panic!("a {} does not decode: {e}", w.kind.name));
            Arc::new(obj)
        }),
        running: held_per_object(&running, |w| cached(w, Stage::Running, now)),
        finished: held_per_object(&finished, |w| cached(w, Stage::Finished, now)),
    }
}

fn main() {
    println!(
        "| runs in history | failed targets listed | managedFields | JSON bytes | heap bytes as DynamicObject | as CachedObject (running) | as projection (finished) | per 20 000 finished (MiB) |"
    );
    println!("| ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: |");
    for (runs, failed, managed) in [
        (1, 0, true),
        (1, 0, false),
        (5, 0, true),
        (10, 0, true),
        (10, 20, true),
        (10, 20, false),
    ] {
        let row = measure(runs, failed, managed);
        println!(
            "| {runs} | {failed} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
            if managed { "yes" } else { "no" },
            row.json_bytes,
            row.dynamic,
            row.running,
            row.finished,
            row.finished * FINISHED / (1024.0 * 1024.0)
        );
    }
}
