//! The one way out to BlueKing: auth headers, rate limit, in-flight cap, envelope decoding,
//! error classification inputs, retries for safe calls.

use std::error::Error as _;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use governor::{Quota, RateLimiter};
use http::{HeaderValue, Method};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, trace};
use url::Url;

use super::config::{ClientConfig, UserAuth, WaitObserver};
use super::envelope::{Redactor, decode_data, decode_envelope, request_id_from_headers};
use super::error::{BkError, CallInfo, CallKind, TransportFailure};
use super::tokens::{READ_DEFERRAL, Tokens};

/// Longest `Retry-After` honoured; a larger value is most likely a misconfiguration and the
/// poller's own backoff takes over.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Pause after a 429 that names no `Retry-After`.
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
/// Attempts for safe calls (first try included).
const SAFE_ATTEMPTS: usize = 3;
/// One HTTP call, described independently of reqwest.
#[derive(Debug)]
pub(crate) struct Request {
    pub call: CallInfo,
    pub method: Method,
    pub url: Url,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Legacy ESB call: credentials may also go into the body.
    pub esb: bool,
}

tokio::task_local! {
    /// Inside [`Transport::with_ticket`]: a create token already taken, how long that took, and
    /// when the create must be sent by. The first create call of the scope uses it instead of
    /// waiting for another.
    static PREPAID: std::cell::Cell<Option<Prepaid>>;
}

/// A create's token, taken ahead of its call.
#[derive(Clone, Copy)]
struct Prepaid {
    /// How long taking it took.
    waited: Duration,
    /// When the create's own wait (a 429's pause, a slot among the calls in flight) began.
    since: Instant,
    /// How long that wait may last before the create is given up unsent.
    window: Duration,
}

/// The shared transport behind a [`super::BkClient`].
pub(crate) struct Transport {
    http: reqwest::Client,
    auth: HeaderValue,
    tenant: Option<HeaderValue>,
    body_credentials: Option<Map<String, Value>>,
    redactor: Redactor,
    tokens: Tokens,
    in_flight: Semaphore,
    /// Set by a 429: no call leaves before this instant (a per-connection back-off).
    paused_until: Mutex<Option<Instant>>,
    /// Offset of timestamps without one.
    pub(crate) naive_offset_secs: i32,
    on_wait: Option<WaitObserver>,
}

impl Transport {
    pub(crate) fn new(cfg: &ClientConfig) -> Result<Self, BkError> {
        // reqwest is built without a default crypto provider; ring is the one in the tree.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            // A redirected POST turns into a GET elsewhere: never follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("bkops/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &cfg.ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| BkError::Config(format!("CA bundle is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(BkError::Config("CA bundle holds no certificate".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| BkError::Config(format!("cannot build the HTTP client: {e}")))?;

        let creds = &cfg.credentials;
        let mut auth = Map::new();
        auth.insert("bk_app_code".into(), creds.app_code.clone().into());
        auth.insert(
            "bk_app_secret".into(),
            creds.app_secret.expose().to_owned().into(),
        );
        match &creds.user {
            UserAuth::Username(u) => auth.insert("bk_username".into(), u.clone().into()),
            UserAuth::BkToken(t) => auth.insert("bk_token".into(), t.expose().to_owned().into()),
            UserAuth::AccessToken(t) => {
                auth.insert("access_token".into(), t.expose().to_owned().into())
            }
        };
        let mut auth_header = HeaderValue::from_str(&Value::Object(auth.clone()).to_string())
            .map_err(|_| {
                BkError::Config("credentials contain characters not allowed in a header".into())
            })?;
        // Keeps hyper and reqwest from printing it in their own debug output.
        auth_header.set_sensitive(true);
        let tenant = match &creds.tenant_id {
            Some(t) => Some(
                HeaderValue::from_str(t)
                    .map_err(|_| BkError::Config("tenant id is not a valid header value".into()))?,
            ),
            None => None,
        };

        if !(cfg.qps.is_finite() && cfg.qps > 0.0) {
            return Err(BkError::Config(format!("qps must be > 0, got {}", cfg.qps)));
        }
        let burst = NonZeroU32::new(cfg.burst)
            .ok_or_else(|| BkError::Config("burst must be at least 1".into()))?;
        let period = Duration::from_secs_f64(1.0 / cfg.qps);
        let quota = Quota::with_period(period)
            .ok_or_else(|| BkError::Config("qps too high".into()))?
            .allow_burst(burst);
        if chrono::FixedOffset::east_opt(cfg.naive_time_offset_secs).is_none() {
            return Err(BkError::Config(
                "naive_time_offset_secs out of range".into(),
            ));
        }
        if cfg.max_in_flight == 0 {
            return Err(BkError::Config("max_in_flight must be at least 1".into()));
        }

        Ok(Transport {
            http,
            auth: auth_header,
            tenant,
            body_credentials: cfg.esb_credentials_in_body.then_some(auth),
            redactor: Redactor::new(creds),
            tokens: Tokens::new(RateLimiter::direct(quota), READ_DEFERRAL),
            in_flight: Semaphore::new(cfg.max_in_flight),
            paused_until: Mutex::new(None),
            naive_offset_secs: cfg.naive_time_offset_secs,
            on_wait: cfg.on_wait.clone(),
        })
    }

    /// Sends `req` and decodes `data` as `T`. Operations and reads are retried on transient errors
    /// (honouring `Retry-After`); creates are sent exactly once.
    pub(crate) async fn call<T: DeserializeOwned>(&self, req: &Request) -> Result<T, BkError> {
        let data = match req.call.kind {
            CallKind::Create => self.send(req).await?,
            CallKind::Operate | CallKind::Safe => {
                let policy = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(SAFE_ATTEMPTS - 1)
                    .with_jitter();
                (|| self.send(req))
                    .retry(policy)
                    .sleep(tokio::time::sleep)
                    .when(BkError::retryable)
                    .adjust(|e: &BkError, backoff| {
                        // A stated Retry-After wins over our own schedule, but never
                        // shortens it, and never ends the retries early.
                        match (e.retry_after(), backoff) {
                            (Some(ra), Some(b)) => Some(ra.min(MAX_RETRY_AFTER).max(b)),
                            (_, b) => b,
                        }
                    })
                    .notify(|e: &BkError, wait| {
                        debug!(call = %req.call, error = %e, wait_ms = wait.as_millis() as u64, "retrying BlueKing call");
                    })
                    .await?
            }
        };
        super::de::with_naive_offset(self.naive_offset_secs, || decode_data(req.call, data))
    }

    /// Takes a token for a create now, ahead of other waiting calls as any create does, and
    /// returns how long that took; [`Transport::with_ticket`] then sends the create without
    /// waiting for the rate again.
    pub(crate) async fn take_create_token(&self) -> Duration {
        let asked = Instant::now();
        self.wait_for_pause().await;
        self.tokens.take(true).await;
        asked.elapsed()
    }

    /// Runs `f` with a create token taken `waited` ago: its first create call uses it, and is
    /// given up unsent ([`BkError::NotSent`]) if it cannot be sent within `window` from now.
    pub(crate) async fn with_ticket<F: std::future::Future>(
        &self,
        waited: Duration,
        window: Duration,
        f: F,
    ) -> F::Output {
        let prepaid = Prepaid {
            waited,
            since: Instant::now(),
            window,
        };
        PREPAID.scope(std::cell::Cell::new(Some(prepaid)), f).await
    }

    /// One attempt: wait for the rate limiter and an in-flight slot, send, decode the envelope.
    async fn send(&self, req: &Request) -> Result<(Value, u16, Option<String>), BkError> {
        let asked = Instant::now();
        let moves_a_job = req.call.kind.moves_a_job();
        let prepaid = match req.call.kind {
            CallKind::Create => PREPAID.try_with(|p| p.take()).ok().flatten(),
            _ => None,
        };
        self.wait_for_pause().await;
        if prepaid.is_none() {
            self.tokens.take(moves_a_job).await;
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| BkError::Config("client is shut down".into()))?;
        if let Some(p) = prepaid
            && p.since.elapsed() > p.window
        {
            return Err(BkError::NotSent {
                call: req.call,
                waited: p.since.elapsed(),
                window: p.window,
            });
        }
        if let Some(WaitObserver(observe)) = &self.on_wait {
            let waited = prepaid.map(|p| p.waited).unwrap_or_default();
            observe(moves_a_job, waited + asked.elapsed());
        }

        let span = tracing::debug_span!("bk_call", system = %req.call.system, endpoint = req.call.endpoint);
        async {
            let mut builder = self
                .http
                .request(req.method.clone(), req.url.clone())
                .header("X-Bkapi-Authorization", self.auth.clone())
                .header(http::header::ACCEPT, "application/json");
            if let Some(t) = &self.tenant {
                builder = builder.header("X-Bk-Tenant-Id", t.clone());
            }
            if !req.query.is_empty() {
                builder = builder.query(&req.query);
            }
            if let Some(body) = &req.body {
                let body = match (&self.body_credentials, req.esb, body) {
                    (Some(creds), true, Value::Object(map)) => {
                        let mut map = map.clone();
                        for (k, v) in creds {
                            map.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                        Value::Object(map)
                    }
                    _ => body.clone(),
                };
                builder = builder.json(&body);
            }

            // The URL never holds credentials; bodies are not logged (they may carry
            // user-provided task credentials or, in ESB mode, ours).
            debug!(method = %req.method, url = %req.url, "BlueKing call");
            let started = Instant::now();
            let result = builder.send().await;
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    let err = self.transport_error(req.call, e);
                    debug!(error = %err, elapsed_ms = started.elapsed().as_millis() as u64, "BlueKing call failed");
                    return Err(err);
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    let err = self.transport_error(req.call, e);
                    debug!(error = %err, status, "BlueKing answer could not be read");
                    return Err(err);
                }
            };
            let request_id = request_id_from_headers(&headers);
            trace!(status, body = %self.redactor.apply(&String::from_utf8_lossy(&bytes)), "BlueKing answer body");
            let decoded = decode_envelope(req.call, status, &headers, &bytes, &self.redactor);
            match &decoded {
                Ok((_, _, rid)) => debug!(
                    status,
                    request_id = rid.as_deref().unwrap_or(""),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "BlueKing call succeeded"
                ),
                Err(err) => {
                    debug!(
                        status,
                        request_id = request_id.as_deref().unwrap_or(""),
                        error = %err,
                        class = ?err.class(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "BlueKing call refused"
                    );
                    if err.is_rate_limited() {
                        self.pause(err.retry_after().unwrap_or(DEFAULT_RATE_LIMIT_PAUSE));
                    }
                }
            }
            decoded
        }
        .instrument(span)
        .await
    }

    fn transport_error(&self, call: CallInfo, e: reqwest::Error) -> BkError {
        let failure = if e.is_connect() {
            TransportFailure::Connect
        } else if e.is_timeout() {
            TransportFailure::Timeout
        } else {
            TransportFailure::Other
        };
        let mut detail = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            src = s.source();
        }
        BkError::Transport {
            call,
            failure,
            detail: self.redactor.apply(&detail),
            source: e,
        }
    }

    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_RETRY_AFTER);
        if let Ok(mut guard) = self.paused_until.lock()
            && guard.is_none_or(|t| t < until)
        {
            *guard = Some(until);
        }
    }

    async fn wait_for_pause(&self) {
        let until = self.paused_until.lock().ok().and_then(|g| *g);
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                tokio::time::sleep(until - now).await;
            }
        }
    }
}
