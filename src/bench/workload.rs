//! The objects the benchmark creates: the four kinds in turn, as the examples write them, plus
//! the Secret and the BkConnection pointing at the simulator.

use kube::api::ApiResource;
use serde_json::{Value, json};

use crate::api::{BkConnection, ExecuteJob};
use crate::sim::System;

/// The four job kinds, in the order objects cycle through them.
pub const KINDS: [&str; 4] = crate::run::kinds::JOB_KIND_NAMES;

/// BKFlow spaces the Taskflows spread over (polls should grow with these, not with tasks).
pub const BKFLOW_SPACES: [i64; 2] = [1, 2];

/// The API resource of a job kind (one of [`KINDS`]; anything else reads as an ExecuteJob).
pub fn resource(kind: &str) -> ApiResource {
    match crate::run::kinds::job_kind(kind) {
        Some(k) => (k.resource)(),
        None => ApiResource::erase::<ExecuteJob>(&()),
    }
}

/// The BlueKing system a job kind submits to (one of [`KINDS`]).
pub fn system(kind: &str) -> System {
    crate::run::kinds::job_kind(kind).map_or(System::Job, |k| k.system.into())
}

/// Object `i` of the workload: its kind, name and manifest.
pub fn job(i: usize) -> (&'static str, String, Value) {
    let kind = KINDS[i % KINDS.len()];
    let name = format!("{}-{i:05}", kind.to_ascii_lowercase());
    let spec = match kind {
        "ProcessJob" => json!({
            "bkBizId": 2,
            "jobObject": "process",
            "jobAction": "restart",
            "expressionScope": {
                "bkSetEnv": "3", "bkSetName": "web", "bkModuleName": "nginx", "bkProcessName": "nginx"
            },
            "activeDeadlineSeconds": 1800,
            "retry": {"limit": 1, "backoffSeconds": 60},
        }),
        "Taskflow" => json!({
            "spaceId": BKFLOW_SPACES[(i / KINDS.len()) % BKFLOW_SPACES.len()],
            "templateId": 4,
            "name": format!("bench {i}"),
            "creator": "admin",
            "constants": {"${version}": "1.4.2"},
        }),
        "AgentJob" => json!({
            "jobType": "RESTART_AGENT",
            "bkBizId": [2],
            "conditions": [{"key": "inner_ip", "value": ["127.0.0.1"]}],
            "excludeHosts": [1, 2, 3],
            "isInstallLatestPlugins": true,
        }),
        _ => json!({
            "bkScopeType": "biz",
            "bkScopeId": "2",
            "jobPlanId": 1000,
            "globalVarList": [
                {"name": "version", "value": "1.4.2"},
                {"id": 436, "server": {"ipList": [
                    {"bkCloudId": 0, "ip": "10.0.0.1"}, {"bkCloudId": 0, "ip": "10.0.0.2"}
                ]}},
            ],
            "activeDeadlineSeconds": 3600,
        }),
    };
    let ar = resource(kind);
    let manifest = json!({
        "apiVersion": ar.api_version,
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    });
    (kind, name, manifest)
}

/// The machine's UTC offset as `+HH:MM` (the simulator writes naive times in local time).
pub fn local_offset() -> String {
    let secs = chrono::Local::now().offset().local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.abs();
    format!("{sign}{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
}

/// The credentials Secret and the `blueking` connection (gateway mode) to a simulator at
/// `base` (ending in `/`), with the given rate limit.
pub fn connection(base: &str, qps: u32, burst: u32, max_in_flight: u32) -> (Value, Value) {
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "blueking-credentials"},
        "stringData": {"bk_app_code": "bkops", "bk_app_secret": "bkops-secret", "bk_username": "admin"},
    });
    let conn = json!({
        "apiVersion": ApiResource::erase::<BkConnection>(&()).api_version,
        "kind": "BkConnection",
        "metadata": {"name": "blueking"},
        "spec": {
            "gateway": {"urlTemplate": format!("{base}api/{{api_name}}/"), "stage": "prod"},
            "credentialsSecretRef": {"name": "blueking-credentials"},
            "bkflowSpaceId": 1,
            "timeZoneOffset": local_offset(),
            "rateLimit": {"qps": qps, "burst": burst, "maxInFlight": max_in_flight},
        },
    });
    (secret, conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_object_parses_as_its_kind_and_validates() {
        for i in 0..8 {
            let (kind, name, manifest) = job(i);
            let mut obj = manifest.clone();
            obj["metadata"]["namespace"] = json!("ns");
            let kind = crate::run::kinds::job_kind(kind).expect("a job kind");
            let errors = (kind.validate)(obj).expect("reads as its kind");
            assert!(errors.is_empty(), "{name}: {errors}");
        }
    }
}
