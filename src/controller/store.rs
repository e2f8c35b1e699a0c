//! The object store of the run lifecycle, for real: the API server through kube, Events through
//! the publisher, and each kind's watch cache for the jobs other objects follow.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector;

use super::cached::CachedObject;
use super::events::Events;
use crate::api::common::{Dependency, DependencyKind, FIELD_MANAGER};
use crate::api::run_record::{FINGERPRINT_LABEL, JOB_KIND_LABEL};
use crate::api::{AgentJob, BkRun, ExecuteJob, ProcessJob, Taskflow};
use crate::run::JobKind;
use crate::run::act::{ObjectStore, Severity, StoreError};
use crate::run::deps::DependencyView;

/// The API server, the Event publisher and the kinds' caches.
pub struct KubeStore {
    client: kube::Client,
    /// The namespaces watched; empty: all.
    namespaces: Vec<String>,
    /// Events, published off the reconcile path.
    pub events: Events,
    /// Each kind's cache (one per watched namespace), for the job ids other objects follow.
    caches: std::sync::Mutex<Vec<(&'static str, reflector::Store<CachedObject>)>>,
}

impl KubeStore {
    /// A store writing through `client` and publishing with `events`, listing `namespaces`
    /// (empty: all).
    pub fn new(client: kube::Client, events: Events, namespaces: Vec<String>) -> Self {
        KubeStore {
            client,
            namespaces,
            events,
            caches: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Adds a watch cache of `kind`.
    pub fn watch_cache(&self, kind: &'static str, cache: reflector::Store<CachedObject>) {
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((kind, cache));
    }

    fn api<K: JobKind>(&self, ns: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), ns)
    }
}

fn store_error(e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) if s.code == 409 => StoreError::Conflict,
        kube::Error::Api(s) if s.code == 404 => StoreError::NotFound,
        e => StoreError::Other(e.to_string()),
    }
}

/// A reference to `obj` for an Event.
pub fn reference<K: JobKind>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        ..Default::default()
    }
}

/// Brings an existing run record up to date, keeping the uid of the object that made the run.
async fn update_record(api: &Api<BkRun>, record: &BkRun) -> Result<(), StoreError> {
    let mut spec =
        serde_json::to_value(&record.spec).map_err(|e| StoreError::Other(e.to_string()))?;
    if let Some(obj) = spec.as_object_mut() {
        obj.remove("jobUid");
    }
    let name = record.metadata.name.as_deref().unwrap_or_default();
    let patch = serde_json::json!({ "spec": spec });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(store_error)
}

impl ObjectStore for KubeStore {
    async fn read<K: JobKind>(&self, ns: &str, name: &str) -> Result<K, StoreError> {
        self.api::<K>(ns)
            .get_status(name)
            .await
            .map_err(store_error)
    }

    async fn list<K: JobKind>(&self) -> Result<Vec<K>, StoreError> {
        let params = kube::api::ListParams::default();
        if self.namespaces.is_empty() {
            let all: Api<K> = Api::all(self.client.clone());
            return Ok(all.list(&params).await.map_err(store_error)?.items);
        }
        let mut items = Vec::new();
        for ns in &self.namespaces {
            items.extend(
                self.api::<K>(ns)
                    .list(&params)
                    .await
                    .map_err(store_error)?
                    .items,
            );
        }
        Ok(items)
    }

    async fn patch_status<K: JobKind>(
        &self,
        ns: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<K, StoreError> {
        self.api::<K>(ns)
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Merge(patch),
            )
            .await
            .map_err(store_error)
    }

    async fn set_finalizers<K: JobKind>(
        &self,
        ns: &str,
        name: &str,
        resource_version: Option<&str>,
        finalizers: Vec<String>,
    ) -> Result<Option<K>, StoreError> {
        let patch = serde_json::json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": resource_version,
        }});
        self.api::<K>(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(Some)
            .map_err(store_error)
    }

    fn event<K: JobKind>(&self, obj: &K, severity: Severity, reason: &str, note: &str) {
        let type_ = match severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        };
        let ev = Event {
            type_,
            reason: reason.chars().take(128).collect(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.events.publish(ev, reference(obj));
    }

    fn claimed_jobs(&self, kind: &'static str, uid: &str) -> HashMap<String, String> {
        #[derive(serde::Deserialize)]
        struct Claim {
            #[serde(rename = "jobId")]
            job_id: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Status {
            run: Option<Claim>,
            #[serde(default)]
            history: Vec<Claim>,
        }
        let mut claimed = HashMap::new();
        let caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        for obj in caches
            .iter()
            .filter(|(k, _)| *k == kind)
            .flat_map(|(_, cache)| cache.state())
        {
            if obj.metadata.uid.as_deref() == Some(uid) {
                continue;
            }
            let Some(Ok(status)) = obj.status_as::<Status>() else {
                continue;
            };
            let who = format!(
                "{}/{}",
                obj.metadata.namespace.as_deref().unwrap_or_default(),
                obj.metadata.name.as_deref().unwrap_or_default()
            );
            for id in status
                .run
                .into_iter()
                .chain(status.history)
                .filter_map(|c| c.job_id)
            {
                claimed.insert(id, who.clone());
            }
        }
        claimed
    }

    async fn put_record(&self, ns: &str, record: &BkRun, known: bool) -> Result<bool, StoreError> {
        let api: Api<BkRun> = Api::namespaced(self.client.clone(), ns);
        if known {
            match update_record(&api, record).await {
                Err(StoreError::NotFound) => {}
                updated => return updated.map(|()| false),
            }
        }
        let params = kube::api::PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match api.create(&params, record).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                update_record(&api, record).await.map(|()| false)
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn records(
        &self,
        ns: &str,
        fingerprint: &str,
        not_older_than: &str,
    ) -> Result<Vec<BkRun>, StoreError> {
        let api: Api<BkRun> = Api::namespaced(self.client.clone(), ns);
        let params =
            kube::api::ListParams::default().labels(&format!("{FINGERPRINT_LABEL}={fingerprint}"));
        // First from the API server's watch cache (no read of every record from etcd). Its
        // answer says how far the cache is; if it has seen `not_older_than`, every record
        // written before it is in there. Otherwise (a quiet cache, or versions that are not
        // numbers) a quorum read decides.
        let cached = api
            .list(&params.clone().match_any())
            .await
            .map_err(store_error)?;
        let seen = |rv: Option<&String>| rv.and_then(|v| v.parse::<u64>().ok());
        if let (Some(cache), Some(wanted)) = (
            seen(cached.metadata.resource_version.as_ref()),
            seen(Some(&not_older_than.to_owned())),
        ) && cache >= wanted
        {
            return Ok(cached.items);
        }
        Ok(api.list(&params).await.map_err(store_error)?.items)
    }

    async fn records_of_kind(&self, kind: &'static str) -> Result<Vec<BkRun>, StoreError> {
        let params = kube::api::ListParams::default().labels(&format!("{JOB_KIND_LABEL}={kind}"));
        if self.namespaces.is_empty() {
            let all: Api<BkRun> = Api::all(self.client.clone());
            return Ok(all.list(&params).await.map_err(store_error)?.items);
        }
        let mut items = Vec::new();
        for ns in &self.namespaces {
            let api: Api<BkRun> = Api::namespaced(self.client.clone(), ns);
            items.extend(api.list(&params).await.map_err(store_error)?.items);
        }
        Ok(items)
    }

    async fn dependency(
        &self,
        ns: &str,
        dep: &Dependency,
    ) -> Result<Option<DependencyView>, StoreError> {
        async fn view<K: JobKind>(
            store: &KubeStore,
            ns: &str,
            name: &str,
        ) -> Result<Option<DependencyView>, StoreError> {
            match store.api::<K>(ns).get(name).await.map_err(store_error) {
                Ok(obj) => Ok(Some(DependencyView::of(&obj))),
                Err(StoreError::NotFound) => Ok(None),
                Err(e) => Err(e),
            }
        }
        match dep.kind {
            DependencyKind::ProcessJob => view::<ProcessJob>(self, ns, &dep.name).await,
            DependencyKind::Taskflow => view::<Taskflow>(self, ns, &dep.name).await,
            DependencyKind::AgentJob => view::<AgentJob>(self, ns, &dep.name).await,
            DependencyKind::ExecuteJob => view::<ExecuteJob>(self, ns, &dep.name).await,
        }
    }
}
