//! Retention of run records: finished `BkRun`s whose run ended longer ago than
//! `--run-retention-days` are deleted. Records of runs in flight, or whose outcome is unknown,
//! are never deleted: they are what keeps a re-created object from running the job again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::BkRun;

/// How often records are looked at.
const EVERY: Duration = Duration::from_secs(3600);

/// Whether `record` may go at `now` when records are kept for `keep`.
pub fn expired(record: &BkRun, now: DateTime<Utc>, keep: Duration) -> bool {
    let Some(ended) = record.spec.completion_time else {
        return false;
    };
    let Ok(keep) = chrono::TimeDelta::from_std(keep) else {
        return false;
    };
    record.spec.finished() && ended.checked_add_signed(keep).is_some_and(|t| t <= now)
}

/// Deletes expired records in `namespaces` (empty: all) once; how many went.
pub async fn sweep(
    client: &kube::Client,
    namespaces: &[String],
    keep: Duration,
) -> Result<usize, kube::Error> {
    let apis: Vec<Api<BkRun>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let now = Utc::now();
    let mut deleted = 0;
    for api in apis {
        for record in api.list(&ListParams::default()).await?.items {
            if !expired(&record, now, keep) {
                continue;
            }
            let (Some(ns), Some(name)) = (&record.metadata.namespace, &record.metadata.name) else {
                continue;
            };
            let params = DeleteParams {
                preconditions: record.metadata.resource_version.clone().map(|rv| {
                    kube::api::Preconditions {
                        resource_version: Some(rv),
                        uid: None,
                    }
                }),
                ..DeleteParams::default()
            };
            match Api::<BkRun>::namespaced(client.clone(), ns)
                .delete(name, &params)
                .await
            {
                Ok(_) => deleted += 1,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

/// Sweeps every hour until `token` is cancelled.
pub async fn run(
    client: kube::Client,
    namespaces: Vec<String>,
    keep: Duration,
    token: CancellationToken,
) {
    loop {
        match sweep(&client, &namespaces, keep).await {
            Ok(0) => {}
            Ok(n) => info!(
                deleted = n,
                "deleted finished run records past their retention"
            ),
            Err(e) => warn!(error = %e, "run record retention failed; trying again in an hour"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = token.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BkRunSpec;
    use crate::api::common::Phase;

    #[test]
    fn only_finished_records_past_retention_expire() {
        let now = Utc::now();
        let day = Duration::from_secs(86_400);
        let record = |phase, job: Option<&str>, ended_days_ago: Option<i64>| {
            BkRun::new(
                "r",
                BkRunSpec {
                    phase,
                    job_id: job.map(str::to_owned),
                    completion_time: ended_days_ago.map(|d| now - chrono::TimeDelta::days(d)),
                    ..BkRunSpec::default()
                },
            )
        };
        assert!(expired(
            &record(Phase::Succeeded, Some("1"), Some(91)),
            now,
            day * 90
        ));
        assert!(!expired(
            &record(Phase::Succeeded, Some("1"), Some(89)),
            now,
            day * 90
        ));
        // In flight, or whose outcome is unknown: kept whatever their age.
        assert!(!expired(
            &record(Phase::Running, Some("1"), Some(400)),
            now,
            day * 90
        ));
        assert!(!expired(
            &record(Phase::Unknown, None, Some(400)),
            now,
            day * 90
        ));
        assert!(!expired(
            &record(Phase::Failed, None, Some(400)),
            now,
            day * 90
        ));
        assert!(!expired(
            &record(Phase::Succeeded, Some("1"), None),
            now,
            day * 90
        ));
    }
}
