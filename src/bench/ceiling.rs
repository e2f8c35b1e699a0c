//! The ceiling the operator's throughput is measured against: a bare client making the
//! operator's writes on the same API server.

use std::time::Instant;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::status;
use super::workload::{self, resource};

/// The ceiling: a bare client creates `n` objects and makes the operator's three status
/// patches on each (intent with a resourceVersion precondition, job id, end), `parallelism`
/// objects at a time. Returns the seconds it took.
pub(super) async fn bare_ceiling(
    client: &Client,
    ns: &str,
    n: usize,
    parallelism: usize,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let (kind, name, manifest) = workload::job(i);
                let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &resource(kind));
                let obj: DynamicObject = serde_json::from_value(manifest)?;
                let created = api.create(&PostParams::default(), &obj).await?;
                let key = format!("{:08x}-g1-a0", i);
                let [mut intent, id, end] = status::lifecycle_patches(&key, i as u64, Utc::now());
                intent["metadata"] = json!({"resourceVersion": created.resource_version()});
                let pp = PatchParams::default();
                api.patch_status(&name, &pp, &Patch::Merge(&intent)).await?;
                api.patch_status(&name, &pp, &Patch::Merge(&id)).await?;
                api.patch_status(&name, &pp, &Patch::Merge(&end)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(parallelism)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(t0.elapsed().as_secs_f64())
}
