//! The bench's setup on the API server: the CRDs, a namespace per run, and the objects of the
//! run's connection.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

use super::workload::resource;
use crate::crdgen::CrdKind;

pub(super) async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for kind in CrdKind::ALL {
        let crd = kind.crd();
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("installing CRD {name}")),
        }
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not Established"))??;
    }
    // Discovery of new CRDs lags their Established condition a little on 1.20.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

pub(super) async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

pub(super) async fn apply(
    client: &Client,
    ns: &str,
    doc: &serde_json::Value,
) -> anyhow::Result<()> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let ar = match kind {
        "Secret" => kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        "BkConnection" => kube::api::ApiResource::erase::<crate::api::BkConnection>(&()),
        other => resource(other),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    api.patch(
        name,
        &PatchParams::apply("bkops-bench").force(),
        &Patch::Apply(doc),
    )
    .await?;
    Ok(())
}
