//! From a job's `connectionRef` to a ready [`BkClient`]: the `BkConnection` and its Secret, both
//! in the job's namespace. Clients are cached per connection so the rate limit and in-flight
//! cap hold across all jobs that share it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use tokio::time::Instant;
use url::Url;

use crate::api::connection::{BkConnection, BkConnectionSpec, DEFAULT_GATEWAY_NAMES, EndpointMode};
use crate::bk::BkClient;
use crate::bk::config::{
    ClientConfig, Credentials, Endpoint, Secret as BkSecret, UserAuth, WaitObserver,
};
use crate::run::Defaults;
pub use crate::run::act::ConnectionError;

use super::metrics::Metrics;

/// How long a resolved connection is used before the connection and Secret are read again.
const TTL: Duration = Duration::from_secs(30);

/// A usable connection.
#[derive(Clone)]
pub struct Resolved {
    /// The client (shared by every job of this connection).
    pub client: BkClient,
    /// Defaults for building calls.
    pub defaults: Defaults,
    /// `namespace/name`, for logs and Events.
    pub id: String,
}

struct Entry {
    resolved: Resolved,
    versions: (String, String),
    fetched: Instant,
    /// When the read that gave it began: a create asked for before then may use it as read
    /// now.
    read_from: Instant,
}

type Key = (String, String);

/// Resolves and caches connections.
///
/// No lock is held across a request to the API server: every reconcile resolves its connection,
/// and one that waited on another's read of an expired entry would stall every submission and
/// poll of the operator behind two requests to a busy API server. One reconcile per connection
/// reads it again; the others meanwhile use the entry it replaces (at most one read older).
pub struct Connections {
    client: Client,
    default_name: Option<String>,
    entries: Mutex<HashMap<Key, Entry>>,
    /// Per connection: held by the reconcile reading it.
    reads: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// Where the clients built report how long their calls waited for the connection's limits.
    metrics: Option<Arc<Metrics>>,
}

impl Connections {
    /// A cache reading with `client`; `default_name` serves jobs without `connectionRef`.
    pub fn new(client: Client, default_name: Option<String>) -> Self {
        Connections {
            client,
            default_name,
            entries: Mutex::new(HashMap::new()),
            reads: Mutex::new(HashMap::new()),
            metrics: None,
        }
    }

    /// The clients built report their calls' waits for the connection's limits to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The cache, held only for a lookup or an update (never across a request).
    fn entries(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached entry of `key`: any, or only one read within [`TTL`].
    fn cached(&self, key: &Key, fresh_only: bool) -> Option<Resolved> {
        self.entries()
            .get(key)
            .filter(|e| !fresh_only || e.fetched.elapsed() < TTL)
            .map(|e| e.resolved.clone())
    }

    /// The cached entry of `key` if the read that gave it began at `asked` or later.
    fn read_since(&self, key: &Key, asked: Instant) -> Option<Resolved> {
        self.entries()
            .get(key)
            .filter(|e| e.read_from >= asked)
            .map(|e| e.resolved.clone())
    }

    /// The connection a job in `ns` refers to, as read at most [`TTL`] ago: for following jobs.
    pub async fn resolve(
        &self,
        ns: &str,
        reference: Option<&crate::api::common::ConnectionRef>,
    ) -> Result<Resolved, ConnectionError> {
        self.lookup(ns, reference, false).await
    }

    /// The connection a job in `ns` refers to, with the `BkConnection` and its Secret read now:
    /// for a create. Deleting a connection or changing its Secret is how a person stops or
    /// re-keys every submission at once, so it must count from the next create on, not once a
    /// cached copy expires. The client (and its rate limiter) is kept when neither changed.
    pub async fn resolve_fresh(
        &self,
        ns: &str,
        reference: Option<&crate::api::common::ConnectionRef>,
    ) -> Result<Resolved, ConnectionError> {
        self.lookup(ns, reference, true).await
    }

    async fn lookup(
        &self,
        ns: &str,
        reference: Option<&crate::api::common::ConnectionRef>,
        fresh: bool,
    ) -> Result<Resolved, ConnectionError> {
        let asked = Instant::now();
        if let Some(r) = reference
            && let Some(other) = r.namespace.as_deref().filter(|o| *o != ns)
        {
            return Err(ConnectionError::OtherNamespace {
                what: "BkConnection",
                name: r.name.clone(),
                other: other.to_owned(),
                own: ns.to_owned(),
            });
        }
        let name = reference
            .map(|r| r.name.clone())
            .or_else(|| self.default_name.clone())
            .ok_or(ConnectionError::NoConnection)?;
        let key = (ns.to_owned(), name.clone());
        if !fresh && let Some(cached) = self.cached(&key, true) {
            return Ok(cached);
        }
        let gate = self
            .reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _reading = match gate.clone().try_lock_owned() {
            Ok(reading) => reading,
            Err(_) => {
                // Another reconcile is reading it: use the entry it replaces, or wait for its
                // read when there is none yet.
                if !fresh && let Some(stale) = self.cached(&key, false) {
                    return Ok(stale);
                }
                gate.lock_owned().await
            }
        };
        // A read that ended while this one waited for the gate; for a create, one that began
        // after the create asked (so the creates of a burst share one read each, instead of
        // reading one after another).
        if !fresh && let Some(cached) = self.cached(&key, true) {
            return Ok(cached);
        }
        if fresh && let Some(read) = self.read_since(&key, asked) {
            return Ok(read);
        }
        let read_from = Instant::now();
        let api_err = |source| ConnectionError::Api {
            connection: name.clone(),
            source,
        };
        let conn = match Api::<BkConnection>::namespaced(self.client.clone(), ns)
            .get_opt(&name)
            .await
            .map_err(api_err)?
        {
            Some(c) => c,
            None => {
                self.entries().remove(&key);
                return Err(ConnectionError::NotFound(name));
            }
        };
        let problems = conn.spec.validate();
        if !problems.is_empty() {
            return Err(ConnectionError::Invalid {
                connection: name,
                problem: problems.to_string(),
            });
        }
        let secret_ref = &conn.spec.credentials_secret_ref;
        if let Some(other) = secret_ref.namespace.as_deref().filter(|o| *o != ns) {
            return Err(ConnectionError::OtherNamespace {
                what: "Secret",
                name: secret_ref.name.clone(),
                other: other.to_owned(),
                own: ns.to_owned(),
            });
        }
        let secret = match Api::<Secret>::namespaced(self.client.clone(), ns)
            .get_opt(&secret_ref.name)
            .await
            .map_err(api_err)?
        {
            Some(s) => s,
            None => {
                self.entries().remove(&key);
                return Err(ConnectionError::SecretNotFound {
                    connection: name,
                    secret: secret_ref.name.clone(),
                });
            }
        };
        let versions = (
            conn.resource_version().unwrap_or_default(),
            secret.resource_version().unwrap_or_default(),
        );
        {
            let mut entries = self.entries();
            if let Some(e) = entries.get_mut(&key)
                && e.versions == versions
            {
                e.fetched = Instant::now();
                e.read_from = read_from;
                return Ok(e.resolved.clone());
            }
        }
        let on_wait = self
            .metrics
            .as_ref()
            .map(|m| m.wait_observer(&format!("{ns}/{name}")));
        let resolved = build(ns, &name, &conn.spec, &secret, on_wait)?;
        self.entries().insert(
            key,
            Entry {
                resolved: resolved.clone(),
                versions,
                fetched: Instant::now(),
                read_from,
            },
        );
        Ok(resolved)
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone())
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The base URL of one system, or `None` when the connection does not reach it.
pub fn endpoint(spec: &BkConnectionSpec, system: &str) -> Result<Option<Endpoint>, String> {
    let ep = spec
        .endpoints()
        .into_iter()
        .find(|(n, _)| *n == system)
        .and_then(|(_, e)| e)
        .cloned()
        .unwrap_or_default();
    let mode = ep.mode.unwrap_or_default();
    let url = match (&ep.url, mode) {
        (Some(u), _) => u.clone(),
        (None, EndpointMode::Gateway) => match &spec.gateway {
            Some(gw) => {
                let api_name = ep.api_name.clone().unwrap_or_else(|| {
                    DEFAULT_GATEWAY_NAMES
                        .iter()
                        .find(|(s, _)| *s == system)
                        .map(|(_, n)| (*n).to_owned())
                        .unwrap_or_default()
                });
                let base = gw.url_template.replace("{api_name}", &api_name);
                let stage = gw.stage.clone().unwrap_or_else(|| "prod".to_owned());
                format!(
                    "{}/{}/",
                    base.trim_end_matches('/'),
                    stage.trim_matches('/')
                )
            }
            None => return Ok(None),
        },
        (None, EndpointMode::Esb) => match &spec.esb_url {
            Some(u) => u.clone(),
            None => return Ok(None),
        },
    };
    let mut url = Url::parse(&url).map_err(|e| format!("{system} URL {url:?}: {e}"))?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(Some(match mode {
        EndpointMode::Gateway => Endpoint::gateway(url),
        EndpointMode::Esb => Endpoint::esb(url),
    }))
}

fn build(
    ns: &str,
    name: &str,
    spec: &BkConnectionSpec,
    secret: &Secret,
    on_wait: Option<WaitObserver>,
) -> Result<Resolved, ConnectionError> {
    let (mut config, defaults) = client_config(name, spec, secret)?;
    config.on_wait = on_wait;
    let client = BkClient::new(config).map_err(|e| ConnectionError::Invalid {
        connection: name.to_owned(),
        problem: e.to_string(),
    })?;
    Ok(Resolved {
        client,
        defaults,
        id: format!("{ns}/{name}"),
    })
}

/// The client settings and call defaults of connection `name` with its Secret: what the
/// operator builds its client from (`bkops plan` too).
pub fn client_config(
    name: &str,
    spec: &BkConnectionSpec,
    secret: &Secret,
) -> Result<(ClientConfig, Defaults), ConnectionError> {
    let secret_name = spec.credentials_secret_ref.name.clone();
    let incomplete = |problem: String| ConnectionError::SecretIncomplete {
        connection: name.to_owned(),
        secret: secret_name.clone(),
        problem,
    };
    let app_code = secret_value(secret, "bk_app_code")
        .ok_or_else(|| incomplete("has no bk_app_code".into()))?;
    let app_secret = secret_value(secret, "bk_app_secret")
        .ok_or_else(|| incomplete("has no bk_app_secret".into()))?;
    let username = secret_value(secret, "bk_username");
    let user = if let Some(t) = secret_value(secret, "access_token") {
        UserAuth::AccessToken(BkSecret::new(t))
    } else if let Some(t) = secret_value(secret, "bk_token") {
        UserAuth::BkToken(BkSecret::new(t))
    } else if let Some(u) = username.clone() {
        UserAuth::Username(u)
    } else {
        return Err(incomplete(
            "has none of bk_username, bk_token or access_token".into(),
        ));
    };
    let invalid = |problem: String| ConnectionError::Invalid {
        connection: name.to_owned(),
        problem,
    };
    let mut config = ClientConfig::new(Credentials {
        app_code,
        app_secret: BkSecret::new(app_secret),
        user,
        tenant_id: spec.tenant_id.clone(),
    });
    config.gsekit = endpoint(spec, "gsekit").map_err(invalid)?;
    config.bkflow = endpoint(spec, "bkflow").map_err(invalid)?;
    config.nodeman = endpoint(spec, "nodeman").map_err(invalid)?;
    config.job = endpoint(spec, "job").map_err(invalid)?;
    if let Some(t) = spec.timeout_seconds {
        config.timeout = Duration::from_secs(t.into());
    }
    if let Some(rl) = &spec.rate_limit {
        if let Some(q) = rl.qps {
            config.qps = f64::from(q);
        }
        if let Some(b) = rl.burst {
            config.burst = b;
        }
        if let Some(m) = rl.max_in_flight {
            config.max_in_flight = m as usize;
        }
    }
    if let Some(offset) = spec
        .time_zone_offset
        .as_deref()
        .and_then(crate::api::connection::parse_offset)
    {
        config.naive_time_offset_secs = offset;
    }
    config.ca_bundle_pem = spec.ca_bundle.as_ref().map(|p| p.as_bytes().to_vec());
    let defaults = Defaults {
        bkflow_space_id: spec.bkflow_space_id,
        username,
    };
    Ok((config, defaults))
}

/// Shared handle.
pub type SharedConnections = Arc<Connections>;

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;

    /// A client whose API server answers the connection `blueking` and its Secret, each read
    /// only once `answers` has a permit for it; `reads` counts the requests.
    fn fake_client(answers: Arc<Semaphore>, reads: Arc<AtomicUsize>) -> Client {
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let answers = answers.clone();
            let reads = reads.clone();
            async move {
                reads.fetch_add(1, Ordering::SeqCst);
                answers.acquire().await?.forget();
                let body = if req.uri().path().contains("/secrets/") {
                    serde_json::json!({
                        "apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "creds", "namespace": "ns", "resourceVersion": "1"},
                        "stringData": {"bk_app_code": "a", "bk_app_secret": "s", "bk_username": "u"},
                    })
                } else {
                    serde_json::json!({
                        "apiVersion": "bkops.io/v1alpha1", "kind": "BkConnection",
                        "metadata": {"name": "blueking", "namespace": "ns", "resourceVersion": "1"},
                        "spec": {
                            "gateway": {"urlTemplate": "http://127.0.0.1:1/api/{api_name}/"},
                            "credentialsSecretRef": {"name": "creds"},
                        },
                    })
                };
                let body = serde_json::to_vec(&body)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http::Response::new(
                    kube::client::Body::from(body),
                ))
            }
        });
        Client::new(service, "ns")
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_connection_is_read_once_while_the_others_go_on() {
        let answers = Arc::new(Semaphore::new(2));
        let reads = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(Connections::new(
            fake_client(answers.clone(), reads.clone()),
            Some("blueking".into()),
        ));
        connections.resolve("ns", None).await.expect("first read");
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "the connection and its Secret"
        );

        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        // One reconcile reads the expired entry again; the API server is slow to answer.
        let reading = tokio::spawn({
            let connections = connections.clone();
            async move { connections.resolve("ns", None).await.map(|_| ()) }
        });
        while reads.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        // The others neither wait for that read nor make their own.
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(1), connections.resolve("ns", None))
                .await
                .expect("resolved without waiting on the other read")
                .expect("the entry being replaced");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        assert!(!reading.is_finished());

        answers.add_permits(2);
        reading.await.expect("joined").expect("read again");
        assert_eq!(reads.load(Ordering::SeqCst), 4, "one read of each, once");
        connections.resolve("ns", None).await.expect("fresh");
        assert_eq!(reads.load(Ordering::SeqCst), 4, "fresh again: no read");
    }

    #[tokio::test(start_paused = true)]
    async fn the_creates_of_a_burst_share_fresh_reads_and_none_uses_an_older_one() {
        let answers = Arc::new(Semaphore::new(0));
        let reads = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(Connections::new(
            fake_client(answers.clone(), reads.clone()),
            Some("blueking".into()),
        ));
        let create = || {
            let connections = connections.clone();
            tokio::spawn(async move { connections.resolve_fresh("ns", None).await.map(|_| ()) })
        };
        // The first create's read is under way when 20 more ask.
        let first = create();
        while reads.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_millis(1)).await;
        let burst: Vec<_> = (0..20).map(|_| create()).collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        answers.add_permits(100);
        first.await.expect("joined").expect("read");
        for c in burst {
            c.await.expect("joined").expect("read");
        }
        // Asked after the first read began, they cannot use it: they share one more read (the
        // connection and its Secret), not one each.
        assert_eq!(reads.load(Ordering::SeqCst), 4, "two reads of both");
        // A create asked once those reads ended reads again.
        tokio::time::advance(Duration::from_millis(1)).await;
        connections
            .resolve_fresh("ns", None)
            .await
            .expect("read now");
        assert_eq!(reads.load(Ordering::SeqCst), 6);
    }

    fn spec(v: serde_json::Value) -> BkConnectionSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn gateway_template_and_overrides() {
        let s = spec(serde_json::json!({
            "gateway": {"urlTemplate": "https://bkapi.example.com/api/{api_name}/", "stage": "stag"},
            "bkflow": {"apiName": "bk-flow-engine"},
            "job": {"url": "https://job.example.com/api/bk-job/prod"},
            "nodeman": {"mode": "esb"},
            "esbUrl": "https://paas.example.com",
            "credentialsSecretRef": {"name": "s"}
        }));
        let url = |sys| endpoint(&s, sys).unwrap().unwrap().base_url.to_string();
        assert_eq!(
            url("gsekit"),
            "https://bkapi.example.com/api/bk-gsekit/stag/"
        );
        assert_eq!(
            url("bkflow"),
            "https://bkapi.example.com/api/bk-flow-engine/stag/"
        );
        assert_eq!(url("job"), "https://job.example.com/api/bk-job/prod/");
        assert_eq!(url("nodeman"), "https://paas.example.com/");
        let esb_only = spec(
            serde_json::json!({"esbUrl": "https://paas.example.com", "gsekit": {"mode": "esb"}, "credentialsSecretRef": {"name": "s"}}),
        );
        assert!(
            endpoint(&esb_only, "bkflow").unwrap().is_none(),
            "BKFlow has no ESB and no gateway here"
        );
    }
}
