//! The demo's last act: every job deleted and applied again from the same YAML, as Argo CD's
//! `Replace=true` or `kubectl delete` + `apply` would. Each new object finds its earlier run by
//! its run record (`BkRun`) and takes it over: not one new create. Then the records are listed,
//! as `kubectl get bkruns` shows them.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube::api::{Api, DeleteParams, DynamicObject};

use super::Demo;
use super::manifests::{api_resource, apply_objects};
use super::scenario::Example;
use crate::api::BkRun;
use crate::run::reason;
use crate::sim::System;

impl Demo {
    async fn creates(&self) -> anyhow::Result<u64> {
        let calls = self
            .control
            .calls()
            .await
            .context("reading the simulator's calls")?;
        Ok(System::ALL.iter().map(|s| calls.get(*s, "create")).sum())
    }

    /// Deletes every job, applies it again, and checks that each adopted its earlier run with no
    /// create; then prints the run records.
    pub(super) async fn recreate(
        &self,
        client: &kube::Client,
        jobs: &[Example],
    ) -> anyhow::Result<()> {
        let ns = &self.args.namespace;
        let before = self.creates().await?;
        crate::outln!(
            "Deleting all {} jobs and applying the same YAML again (as Argo CD Replace=true or kubectl delete + apply would) ...",
            jobs.len()
        )?;
        let api = |job: &Example| -> anyhow::Result<Api<DynamicObject>> {
            let resource = api_resource(&job.kind).context("a job kind")?;
            Ok(Api::namespaced_with(client.clone(), ns, &resource))
        };
        for job in jobs {
            api(job)?
                .delete(&job.name, &DeleteParams::default())
                .await
                .with_context(|| format!("deleting {} {}", job.kind, job.name))?;
        }
        let deadline = Instant::now() + Duration::from_secs(self.args.timeout_seconds);
        for job in jobs {
            while api(job)?.get_opt(&job.name).await?.is_some() {
                if Instant::now() > deadline {
                    bail!(
                        "{} {} was never let go after its deletion",
                        job.kind,
                        job.name
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let docs: Vec<_> = jobs.iter().map(|j| j.doc.clone()).collect();
        apply_objects(client, ns, &docs).await?;
        let mut adopted = 0;
        for job in jobs {
            loop {
                let obj = api(job)?.get_opt(&job.name).await?;
                let run_reason = obj
                    .as_ref()
                    .and_then(|o| o.data.pointer("/status/run/reason"))
                    .and_then(|r| r.as_str())
                    .map(str::to_owned);
                if run_reason.as_deref() == Some(reason::ADOPTED_EARLIER_RUN) {
                    adopted += 1;
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} {} did not adopt its earlier run (run reason {run_reason:?})",
                        job.kind,
                        job.name
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Creates a mistake would make have had time to happen.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = self.creates().await?;
        if after != before {
            bail!(
                "re-creating the jobs made {} BlueKing creates; it must make none",
                after - before
            );
        }
        crate::outln!(
            "  {adopted} of {} re-created jobs adopted their earlier run from its record (reason {}); BlueKing creates: {before} before, {after} after.",
            jobs.len(),
            reason::ADOPTED_EARLIER_RUN
        )?;
        self.print_records(client).await
    }

    async fn print_records(&self, client: &kube::Client) -> anyhow::Result<()> {
        let ns = &self.args.namespace;
        let mut records = Api::<BkRun>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await
            .context("listing the run records")?
            .items;
        records.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        crate::outln!(
            "\nRun records (kubectl get bkruns -n {ns}): {}",
            records.len()
        )?;
        let mut rows = vec![vec![
            "NAME".to_owned(),
            "PHASE".to_owned(),
            "JOB ID".to_owned(),
        ]];
        for r in &records {
            rows.push(vec![
                r.metadata.name.clone().unwrap_or_default(),
                r.spec.phase.to_string(),
                r.spec.job_id.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        let widths: Vec<usize> = (0..3)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            crate::outln!("  {}", line.join("   ").trim_end())?;
        }
        crate::outln!()?;
        Ok(())
    }
}
