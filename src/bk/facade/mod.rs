//! The system-neutral face of the client, used by the run lifecycle: submit once, start,
//! follow progress, cancel, search for a job whose submission outcome is unknown, and read
//! what each target of a job did.

mod logs;
mod operate;
mod phases;
mod progress;
mod search;
mod submit;
mod types;

pub use logs::{LOG_TARGETS_CAP, StepLog, TargetLog, TargetLogs, TargetOutcome};
pub use phases::{bkflow_phase, gsekit_phase, job_phase, nodeman_phase};
pub use submit::CreateTicket;
pub use types::{
    CancelOutcome, Candidate, CreateRequest, FAILED_TARGETS_CAP, FailedTarget, JobPhase, JobRef,
    Progress, SearchQuery, SearchTarget, Searched, Submitted, Summary, Unsupported,
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn list_shapes() {
        assert_eq!(super::super::de::list_items(json!([1, 2])).0.len(), 2);
        let (items, count) = super::super::de::list_items(json!({"count": 5, "results": [1]}));
        assert_eq!((items.len(), count), (1, Some(5)));
        let (items, count) = super::super::de::list_items(json!({"total": "3", "data": [1, 2, 3]}));
        assert_eq!((items.len(), count), (3, Some(3)));
        assert_eq!(super::super::de::list_items(json!(null)).0.len(), 0);
    }
}
