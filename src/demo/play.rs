//! The demo's course: the world set up, the examples applied with their twists, and the live
//! table followed (approving the job that waits for a person) until every run has ended.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube::api::{Api, DynamicObject};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Demo;
use super::manifests::{JOB_KINDS, api_resource, apply_objects, apply_yaml, connections_yaml};
use super::scenario::{Example, Twist, choose_twists, system_label};
use super::start::{create_namespace, operator_config};
use super::summary::Checked;
use super::table::{Layout, Live, Row};
use crate::api::{JobStatus, Phase};

impl Demo {
    fn client(&self) -> anyhow::Result<kube::Client> {
        let cp = self.cp.as_ref().context("the control plane is gone")?;
        Ok(cp.client()?)
    }

    /// Everything between a ready control plane and the summary.
    pub(super) async fn play(
        &mut self,
        jobs: &[Example],
        skipped: &[String],
        color: bool,
        tty: bool,
    ) -> anyhow::Result<()> {
        let client = self.client()?;
        let ns = self.args.namespace.clone();
        crate::local::install_crds(&client).await?;
        crate::outln!("  CRDs installed")?;
        create_namespace(&client, &ns).await?;
        let base = self
            .sim
            .as_ref()
            .map(|s| s.base_url().to_string())
            .unwrap_or_default();
        apply_yaml(&client, &ns, &connections_yaml(&base)).await?;
        crate::outln!(
            "  BlueKing simulator at {base}; connections blueking and blueking-esb in namespace {ns}"
        )?;
        let token = CancellationToken::new();
        let task = tokio::spawn(crate::controller::run(
            client.clone(),
            operator_config(&ns),
            token.clone(),
        ));
        self.operator = Some((token, task));
        crate::outln!("  operator running in this process, watching namespace {ns}")?;
        for s in skipped {
            crate::outln!("  skipped {s} (the demo makes its own connections to the simulator)")?;
        }
        crate::outln!()?;

        let rows: Vec<Row> = jobs
            .iter()
            .map(|j| Row::from_status(&j.kind, &j.name, None))
            .collect();
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .or(tty.then_some(120));
        let mut live = Live::new(Layout::new(&rows, color, columns), tty);
        let checked = self.follow(&client, jobs, &mut live).await?;
        if !self.args.no_recreate {
            self.recreate(&client, jobs).await?;
        }
        self.summarize(&checked, color).await
    }

    /// Applies the jobs and shows the table until every run has ended.
    async fn follow(
        &mut self,
        client: &kube::Client,
        jobs: &[Example],
        live: &mut Live,
    ) -> anyhow::Result<Vec<Checked>> {
        let ns = self.args.namespace.clone();
        let twists = choose_twists(jobs);
        // The twisted jobs go first, each right after its behaviour, so it meets their creates.
        for &(i, twist) in &twists {
            let job = &jobs[i];
            self.control
                .set_behaviour(&twist.behaviour(job.system))
                .await
                .context("setting a simulator behaviour")?;
            apply_objects(client, &ns, std::slice::from_ref(&job.doc)).await?;
            live.note(format!(
                "applied {} {} ({}): {}",
                job.kind,
                job.name,
                job.file,
                twist.describe()
            ))?;
        }
        let mut rest_applied = twists.is_empty();
        if rest_applied {
            self.apply_rest(client, jobs, &twists, live).await?;
        }
        let started = Instant::now();
        let timeout = Duration::from_secs(self.args.timeout_seconds);
        let approve_after = Duration::from_secs_f64(self.args.job_seconds.clamp(1.0, 3.0));
        let mut waiting_since: BTreeMap<usize, Instant> = BTreeMap::new();
        let mut approved: Vec<usize> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stop.cancelled() => bail!("interrupted"),
            }
            if let Some((_, task)) = &self.operator
                && task.is_finished()
            {
                let result = match self.operator.take() {
                    Some((_, task)) => task.await,
                    None => Ok(Ok(())),
                };
                match result {
                    Ok(Ok(())) => bail!("the operator stopped on its own"),
                    Ok(Err(e)) => return Err(e.context("the operator stopped")),
                    Err(e) => bail!("the operator task failed: {e}"),
                }
            }
            let rows = fetch_rows(client, &ns, jobs).await?;
            if !rest_applied {
                let twisted_submitted = twists
                    .iter()
                    .all(|&(i, _)| rows[i].job.is_some() || rows[i].is_final());
                if twisted_submitted || started.elapsed() > Duration::from_secs(30) {
                    self.apply_rest(client, jobs, &twists, live).await?;
                    rest_applied = true;
                }
            }
            for (i, row) in rows.iter().enumerate() {
                if row.phase != Some(Phase::WaitingForUser) || approved.contains(&i) {
                    continue;
                }
                let since = *waiting_since.entry(i).or_insert_with(Instant::now);
                let id = row
                    .job
                    .as_deref()
                    .and_then(|j| j.trim().parse::<u64>().ok());
                if let (true, Some(id)) = (since.elapsed() >= approve_after, id) {
                    self.control
                        .approve(jobs[i].system, id)
                        .await
                        .with_context(|| {
                            format!("approving {} job {id}", system_label(jobs[i].system))
                        })?;
                    approved.push(i);
                    live.note(format!(
                        "approved {} job {id} of {} {} in the simulator, as the person it waits for",
                        system_label(jobs[i].system),
                        jobs[i].kind,
                        jobs[i].name
                    ))?;
                }
            }
            let open = rows.iter().filter(|r| !r.is_final()).count();
            let done = rest_applied && open == 0;
            let footer = if done {
                format!(
                    "every run has ended ({:.0} s)",
                    started.elapsed().as_secs_f32()
                )
            } else {
                format!(
                    "waiting for {open} of {} runs to end ({:.0} s, timeout {} s; Ctrl-C stops)",
                    rows.len(),
                    started.elapsed().as_secs_f32(),
                    timeout.as_secs()
                )
            };
            live.draw(&rows, &footer)?;
            if done {
                crate::outln!()?;
                let expected = |i: usize| {
                    twists
                        .iter()
                        .find(|(t, _)| *t == i)
                        .map(|(_, twist)| twist.expected())
                        .unwrap_or(Phase::Succeeded)
                };
                let sim_jobs = self
                    .control
                    .jobs()
                    .await
                    .context("reading the simulator's jobs")?;
                return Ok(rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, row)| {
                        let system = jobs[i].system;
                        let id = row
                            .job
                            .as_deref()
                            .and_then(|j| j.trim().parse::<u64>().ok());
                        let sim = sim_jobs
                            .iter()
                            .find(|j| j.system == system && Some(j.id) == id)
                            .cloned();
                        Checked {
                            row,
                            system,
                            sim,
                            expected: expected(i),
                            approved: approved.contains(&i),
                        }
                    })
                    .collect());
            }
            if started.elapsed() > timeout {
                let layout = live.layout().clone();
                let unfinished: Vec<String> = rows
                    .iter()
                    .filter(|r| !r.is_final())
                    .map(|r| layout.line(r))
                    .collect();
                bail!(
                    "timed out after {} s; these runs have not ended:\n{}\n{}",
                    timeout.as_secs(),
                    layout.header(),
                    unfinished.join("\n")
                );
            }
        }
    }

    async fn apply_rest(
        &self,
        client: &kube::Client,
        jobs: &[Example],
        twists: &[(usize, Twist)],
        live: &mut Live,
    ) -> anyhow::Result<()> {
        let rest: Vec<Value> = jobs
            .iter()
            .enumerate()
            .filter(|(i, _)| !twists.iter().any(|(t, _)| t == i))
            .map(|(_, j)| j.doc.clone())
            .collect();
        apply_objects(client, &self.args.namespace, &rest).await?;
        live.note(format!("applied the other {} job manifests", rest.len()))?;
        Ok(())
    }
}

/// The rows of the table, in the order of `jobs`.
async fn fetch_rows(client: &kube::Client, ns: &str, jobs: &[Example]) -> anyhow::Result<Vec<Row>> {
    let mut statuses: BTreeMap<(String, String), Option<JobStatus>> = BTreeMap::new();
    for kind in JOB_KINDS {
        if !jobs.iter().any(|j| j.kind == kind) {
            continue;
        }
        let Some(resource) = api_resource(kind) else {
            continue;
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        let list = api
            .list(&Default::default())
            .await
            .with_context(|| format!("listing {kind}s in {ns}"))?;
        for obj in list {
            let status = obj
                .data
                .get("status")
                .and_then(|s| serde_json::from_value::<JobStatus>(s.clone()).ok());
            statuses.insert(
                (kind.to_owned(), obj.metadata.name.unwrap_or_default()),
                status,
            );
        }
    }
    Ok(jobs
        .iter()
        .map(|j| {
            let status = statuses
                .get(&(j.kind.clone(), j.name.clone()))
                .and_then(Option::as_ref);
            Row::from_status(&j.kind, &j.name, status)
        })
        .collect())
}
