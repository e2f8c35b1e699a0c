//! The typed async BlueKing client: GSEKit, BKFlow, NodeMan and JOB, over the API gateway or
//! the legacy ESB.
//!
//! It knows nothing of Kubernetes. Layers:
//! - [`transport`](self) (private): auth header, tenant header, rate limit, in-flight cap,
//!   envelope decoding, error classification inputs, retries for safe calls;
//! - [`gsekit`], [`bkflow`], [`nodeman`], [`job`]: typed requests and answers per system;
//! - [`facade`]: the system-neutral calls the run lifecycle uses (`submit`, `start`,
//!   `progress`, `cancel`, `search`), and `target_logs` for people.
//!
//! Creates are never retried; anything unclear about a create is
//! [`ErrorClass::Ambiguous`]. See [`error::classify_answer`] for the whole table.

use std::fmt;
use std::sync::Arc;

use http::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

pub mod bkflow;
pub mod config;
pub(crate) mod de;
mod envelope;
pub mod error;
pub mod facade;
pub mod gsekit;
pub mod job;
pub mod nodeman;
mod tokens;
mod transport;

pub use config::{ClientConfig, Credentials, Endpoint, Mode, Secret, UserAuth, WaitObserver};
pub use error::{ApiError, BkError, CallInfo, CallKind, Code, ErrorClass, TransportFailure};
pub use facade::{
    CancelOutcome, Candidate, CreateRequest, CreateTicket, FailedTarget, JobPhase, JobRef,
    Progress, SearchQuery, SearchTarget, StepLog, Submitted, Summary, TargetLog, TargetLogs,
    TargetOutcome, Unsupported,
};

use transport::{Request, Transport};

/// The four BlueKing systems the client talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// GSEKit (process and config-file jobs).
    Gsekit,
    /// BKFlow (task flows).
    Bkflow,
    /// NodeMan (agent and plugin jobs).
    Nodeman,
    /// JOB (job plans).
    Job,
}

impl System {
    /// Whether the system keeps the run key on its jobs, where a search can read it back: BKFlow
    /// (the task name). GSEKit takes `extra_data` on a create but does not store the request's
    /// on the job row its list returns (its create hands it to the task builder only), and
    /// NodeMan and JOB have no field for it.
    pub fn stores_run_key(self) -> bool {
        matches!(self, System::Bkflow)
    }

    /// A stable lowercase name, fit for metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            System::Gsekit => "gsekit",
            System::Bkflow => "bkflow",
            System::Nodeman => "nodeman",
            System::Job => "job",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Gsekit => "GSEKit",
            System::Bkflow => "BKFlow",
            System::Nodeman => "NodeMan",
            System::Job => "JOB",
        })
    }
}

/// Legacy ESB component prefix, relative to the ESB host root.
const ESB_PREFIX: &str = "api/c/compapi/v2/";

/// A configured endpoint with its base URL checked and normalised.
#[derive(Clone, Debug)]
struct Resolved {
    mode: Mode,
    base: Url,
}

struct Inner {
    transport: Transport,
    gsekit: Option<Resolved>,
    bkflow: Option<Resolved>,
    nodeman: Option<Resolved>,
    job: Option<Resolved>,
    /// The user name, when the credentials carry one: BKFlow operations name an operator.
    username: Option<String>,
    /// Whole-call timeout.
    timeout: std::time::Duration,
    /// A client that only records the calls it would make ([`BkClient::recording`]).
    recorder: Option<CallLog>,
}

/// A call as it would be sent, without credentials (they are added by the transport).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlannedCall {
    /// The system.
    pub system: System,
    /// `gateway` or `esb`.
    pub mode: &'static str,
    /// The HTTP method.
    pub method: String,
    /// The full URL, without query.
    pub url: String,
    /// Query parameters (GET).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
    /// The JSON body (POST).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// The calls a recording client was asked to make.
pub type CallLog = Arc<std::sync::Mutex<Vec<PlannedCall>>>;

/// The BlueKing client. Cheap to clone; clones share one connection pool, one rate limiter and
/// one in-flight cap, so build one client per connection (per `BkConnection`).
#[derive(Clone)]
pub struct BkClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for BkClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |e: &Option<Resolved>| e.as_ref().map(|r| format!("{:?} {}", r.mode, r.base));
        f.debug_struct("BkClient")
            .field("gsekit", &show(&self.inner.gsekit))
            .field("bkflow", &show(&self.inner.bkflow))
            .field("nodeman", &show(&self.inner.nodeman))
            .field("job", &show(&self.inner.job))
            .finish_non_exhaustive()
    }
}

impl BkClient {
    /// Builds a client; fails on an unusable configuration (bad URL, BKFlow over ESB, zero
    /// rate, bad CA bundle).
    pub fn new(config: ClientConfig) -> Result<BkClient, BkError> {
        let resolve = |e: &Option<Endpoint>| -> Result<Option<Resolved>, BkError> {
            e.as_ref()
                .map(|e| {
                    Ok(Resolved {
                        mode: e.mode,
                        base: e.normalized_base()?,
                    })
                })
                .transpose()
        };
        let bkflow = resolve(&config.bkflow)?;
        if bkflow.as_ref().is_some_and(|r| r.mode == Mode::Esb) {
            return Err(BkError::Config(
                "BKFlow has no legacy ESB component; configure its API gateway".into(),
            ));
        }
        let username = match &config.credentials.user {
            UserAuth::Username(u) => Some(u.clone()),
            _ => None,
        };
        Ok(BkClient {
            inner: Arc::new(Inner {
                transport: Transport::new(&config)?,
                gsekit: resolve(&config.gsekit)?,
                bkflow,
                nodeman: resolve(&config.nodeman)?,
                job: resolve(&config.job)?,
                username,
                timeout: config.timeout,
                recorder: None,
            }),
        })
    }

    /// A client that sends nothing: each call is recorded in the returned log and fails with
    /// [`BkError::NotSent`]. For showing what a job would send (`bkops plan`).
    pub fn recording(config: ClientConfig) -> Result<(BkClient, CallLog), BkError> {
        let client = BkClient::new(config)?;
        let log = CallLog::default();
        let mut inner = Arc::try_unwrap(client.inner)
            .map_err(|_| BkError::Config("a new client is shared".into()))?;
        inner.recorder = Some(log.clone());
        Ok((
            BkClient {
                inner: Arc::new(inner),
            },
            log,
        ))
    }

    fn endpoint(&self, system: System) -> Result<&Resolved, BkError> {
        let e = match system {
            System::Gsekit => &self.inner.gsekit,
            System::Bkflow => &self.inner.bkflow,
            System::Nodeman => &self.inner.nodeman,
            System::Job => &self.inner.job,
        };
        e.as_ref()
            .ok_or_else(|| BkError::Config(format!("no endpoint configured for {system}")))
    }

    /// How long one call may take before the client gives up on it.
    pub fn timeout(&self) -> std::time::Duration {
        self.inner.timeout
    }

    /// The mode `system` is reached through, if configured.
    pub fn mode(&self, system: System) -> Option<Mode> {
        self.endpoint(system).ok().map(|r| r.mode)
    }

    /// Builds and runs one call. `gateway`/`esb` are the resource paths relative to the
    /// endpoint base (ESB paths without the `api/c/compapi/v2/` prefix); `None` means the
    /// system has no such resource in that mode.
    async fn call<T: DeserializeOwned>(&self, spec: CallSpec<'_>) -> Result<T, BkError> {
        let ep = self.endpoint(spec.call.system)?;
        let (path, method, esb) = match ep.mode {
            Mode::Gateway => (
                spec.gateway.map(str::to_owned),
                spec.gateway_method.clone(),
                false,
            ),
            Mode::Esb => (
                spec.esb.map(|p| format!("{ESB_PREFIX}{p}")),
                spec.esb_method.clone(),
                true,
            ),
        };
        let path = path.ok_or_else(|| {
            BkError::Config(format!(
                "{} has no {:?} resource for {}",
                spec.call.system, ep.mode, spec.call.endpoint
            ))
        })?;
        let url = ep
            .base
            .join(&path)
            .map_err(|e| BkError::Config(format!("bad resource path {path}: {e}")))?;
        let (query, body) = if method == Method::GET {
            (to_query(spec.params), None)
        } else {
            (Vec::new(), Some(spec.params))
        };
        if let Some(log) = &self.inner.recorder {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(PlannedCall {
                    system: spec.call.system,
                    mode: if esb { "esb" } else { "gateway" },
                    method: method.to_string(),
                    url: url.to_string(),
                    query,
                    body,
                });
            return Err(BkError::NotSent {
                call: spec.call,
                waited: std::time::Duration::ZERO,
                window: std::time::Duration::ZERO,
            });
        }
        let req = Request {
            call: spec.call,
            method,
            url,
            query,
            body,
            esb,
        };
        self.inner.transport.call(&req).await
    }
}

impl BkClient {
    /// Decodes list rows; a row this client cannot read is skipped rather than failing the
    /// whole list (a search must not break on one odd row).
    fn decode_rows<T: DeserializeOwned>(&self, rows: Vec<Value>) -> Vec<T> {
        de::with_naive_offset(self.inner.transport.naive_offset_secs, || {
            rows.into_iter()
                .filter_map(|r| serde_json::from_value::<T>(r).ok())
                .collect()
        })
    }
}

/// What a typed call hands to [`BkClient::call`].
struct CallSpec<'a> {
    call: CallInfo,
    gateway: Option<&'a str>,
    gateway_method: Method,
    esb: Option<&'a str>,
    esb_method: Method,
    /// Body for POST, query parameters for GET (top-level scalars only).
    params: Value,
}

impl<'a> CallSpec<'a> {
    fn new(system: System, endpoint: &'static str, kind: CallKind, params: Value) -> Self {
        CallSpec {
            call: CallInfo {
                system,
                endpoint,
                kind,
            },
            gateway: None,
            gateway_method: Method::POST,
            esb: None,
            esb_method: Method::POST,
            params,
        }
    }

    fn gateway(mut self, method: Method, path: &'a str) -> Self {
        self.gateway = Some(path);
        self.gateway_method = method;
        self
    }

    fn esb(mut self, method: Method, path: &'a str) -> Self {
        self.esb = Some(path);
        self.esb_method = method;
        self
    }
}

/// Flattens a JSON object into query pairs; lists become comma-separated values.
fn to_query(params: Value) -> Vec<(String, String)> {
    let Value::Object(map) = params else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| {
            let val = match v {
                Value::Null => return None,
                Value::String(s) => s,
                Value::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            Some((k, val))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClientConfig {
        ClientConfig::new(Credentials {
            app_code: "app".into(),
            app_secret: Secret::new("s3cr3t"),
            user: UserAuth::Username("admin".into()),
            tenant_id: None,
        })
    }

    #[test]
    fn bad_configurations_are_refused() -> Result<(), url::ParseError> {
        let mut c = cfg();
        c.bkflow = Some(Endpoint::esb(Url::parse("https://paas.example.com/")?));
        assert!(matches!(BkClient::new(c), Err(BkError::Config(_))));

        let mut c = cfg();
        c.qps = 0.0;
        assert!(matches!(BkClient::new(c), Err(BkError::Config(_))));

        let mut c = cfg();
        c.ca_bundle_pem = Some(b"not a certificate".to_vec());
        assert!(matches!(BkClient::new(c), Err(BkError::Config(_))));

        let mut c = cfg();
        c.job = Some(Endpoint::gateway(Url::parse(
            "ftp://bkapi.example.com/api/bk-job/prod/",
        )?));
        assert!(matches!(BkClient::new(c), Err(BkError::Config(_))));

        let mut c = cfg();
        c.gsekit = Some(Endpoint::gateway(Url::parse(
            "https://bkapi.example.com/api/bk-gsekit/prod",
        )?));
        let client = BkClient::new(c);
        assert!(client.is_ok());
        let dbg = format!("{client:?}");
        assert!(
            dbg.contains("bk-gsekit/prod/") && !dbg.contains("s3cr3t"),
            "{dbg}"
        );
        Ok(())
    }
}
