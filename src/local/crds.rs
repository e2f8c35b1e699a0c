//! Installing bkops's CRDs into a (local) cluster, for the tests and `bkops demo`.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};

use super::LocalError;
use crate::crdgen::CrdKind;

/// How long each CRD may take to become Established and then servable.
const CRD_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates the generated CRDs of every kind (one that exists already is left as it is) and waits
/// until each is Established and its objects can be listed.
///
/// The second wait matters on 1.20: the API server answers 404 for a new kind for a moment
/// after reporting it Established.
pub async fn install_crds(client: &kube::Client) -> Result<(), LocalError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for kind in CrdKind::ALL {
        let crd = kind.crd();
        let name = crd.metadata.name.clone().unwrap_or_default();
        let failed = |reason: String| LocalError::Crd {
            name: name.clone(),
            reason,
        };
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(failed(err.to_string())),
        }
        tokio::time::timeout(
            CRD_READY_TIMEOUT,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .map_err(|_| {
            failed(format!(
                "not Established after {} s",
                CRD_READY_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|err| failed(err.to_string()))?;
        wait_servable(client, &crd).await.map_err(failed)?;
    }
    Ok(())
}

/// Lists objects of the CRD's kind until the API server serves them.
async fn wait_servable(
    client: &kube::Client,
    crd: &CustomResourceDefinition,
) -> Result<(), String> {
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.served)
        .map(|v| v.name.clone())
        .ok_or_else(|| "no served version".to_owned())?;
    let resource = ApiResource {
        group: crd.spec.group.clone(),
        version: version.clone(),
        api_version: format!("{}/{version}", crd.spec.group),
        kind: crd.spec.names.kind.clone(),
        plural: crd.spec.names.plural.clone(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let deadline = Instant::now() + CRD_READY_TIMEOUT;
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() >= deadline => {
                return Err(format!(
                    "Established but not served after {} s: {err}",
                    CRD_READY_TIMEOUT.as_secs()
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
