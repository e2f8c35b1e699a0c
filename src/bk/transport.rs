//! The one way out to BlueKing: auth headers, rate limit, in-flight cap, envelope decoding,
//! error classification inputs, retries for safe calls.

use std::error::Error as _;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, Method};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, trace};
use url::Url;

use super::config::{ClientConfig, Credentials, UserAuth, WaitObserver};
use super::error::{ApiError, BkError, CallInfo, CallKind, Code, TransportFailure};
use super::tokens::{READ_DEFERRAL, Tokens};

/// Longest `Retry-After` honoured; a larger value is most likely a misconfiguration and the
/// poller's own backoff takes over.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Pause after a 429 that names no `Retry-After`.
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
/// Attempts for safe calls (first try included).
const SAFE_ATTEMPTS: usize = 3;
/// Longest upstream text kept in an error.
const MAX_TEXT: usize = 1000;

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

/// Replaces every configured secret in upstream text, in case an upstream echoes a request.
#[derive(Clone)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub(crate) fn new(creds: &Credentials) -> Self {
        let mut secrets = vec![creds.app_secret.expose().to_owned()];
        match &creds.user {
            UserAuth::BkToken(s) | UserAuth::AccessToken(s) => secrets.push(s.expose().to_owned()),
            UserAuth::Username(_) => {}
        }
        // Short values would redact ordinary words; a real secret is never this short.
        secrets.retain(|s| s.len() >= 4);
        Redactor { secrets }
    }

    pub(crate) fn apply(&self, text: &str) -> String {
        let mut out = truncate(text, MAX_TEXT);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
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

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn request_id_from_headers(headers: &HeaderMap) -> Option<String> {
    header_str(headers, "X-Bkapi-Request-ID").map(str::to_owned)
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = header_str(headers, "Retry-After")?;
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    delta.to_std().ok().or(Some(Duration::ZERO))
}

fn code_of(v: Option<&Value>) -> Option<Code> {
    match v? {
        Value::Number(n) => n.as_i64().map(Code::Int),
        Value::String(s) => Some(Code::Str(s.clone())),
        _ => None,
    }
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Decodes a BlueKing answer into its `data` (plus HTTP status and request id), or the error
/// it stands for. Trusts `result`, never HTTP 200 or `code` alone.
pub(crate) fn decode_envelope(
    call: CallInfo,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    redactor: &Redactor,
) -> Result<(Value, u16, Option<String>), BkError> {
    let retry_after = parse_retry_after(headers);
    let header_code = header_str(headers, "X-Bkapi-Error-Code").map(|c| match c.parse::<i64>() {
        Ok(n) => Code::Int(n),
        Err(_) => Code::Str(c.to_owned()),
    });
    let mut map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };
    let request_id = request_id_from_headers(headers).or_else(|| {
        let m = map.as_ref()?;
        ["request_id", "job_request_id", "trace_id"]
            .iter()
            .find_map(|k| text_of(m.get(*k)))
    });

    let result = map
        .as_ref()
        .and_then(|m| m.get("result"))
        .and_then(Value::as_bool);
    match (result, map.as_mut()) {
        (Some(true), Some(m)) => {
            let data = m.remove("data").unwrap_or(Value::Null);
            Ok((data, status, request_id))
        }
        (Some(false), Some(m)) => Err(api_error(
            call,
            status,
            code_of(m.get("code")).or(header_code),
            m,
            headers,
            request_id,
            retry_after,
            redactor,
        )),
        (None, _) if header_code.is_some() => {
            let empty = Map::new();
            let m = map.as_ref().unwrap_or(&empty);
            Err(api_error(
                call,
                status,
                code_of(m.get("code")).or(header_code),
                m,
                headers,
                request_id,
                retry_after,
                redactor,
            ))
        }
        _ if !(200..300).contains(&status) => Err(BkError::Http {
            call,
            status,
            request_id,
            retry_after,
            body: redactor.apply(&truncate(&String::from_utf8_lossy(body), 300)),
        }),
        (_, Some(_)) => Err(BkError::Decode {
            call,
            status,
            request_id,
            path: "result".into(),
            message: "the envelope has no boolean `result`".into(),
        }),
        (_, None) => Err(BkError::Decode {
            call,
            status,
            request_id,
            path: ".".into(),
            message: format!(
                "not a JSON object: {}",
                redactor.apply(&truncate(&String::from_utf8_lossy(body), 200))
            ),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn api_error(
    call: CallInfo,
    status: u16,
    code: Option<Code>,
    m: &Map<String, Value>,
    headers: &HeaderMap,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    redactor: &Redactor,
) -> BkError {
    let message = text_of(m.get("message"))
        .or_else(|| text_of(m.get("errors")))
        .or_else(|| header_str(headers, "X-Bkapi-Error-Message").map(str::to_owned))
        .unwrap_or_default();
    BkError::Api(Box::new(ApiError {
        call,
        status,
        code,
        code_name: text_of(m.get("code_name")),
        message: redactor.apply(&message),
        request_id,
        retry_after,
    }))
}

/// Decodes `data` as `T`; a mismatch names the JSON path (`data.job_info.status`).
pub(crate) fn decode_data<T: DeserializeOwned>(
    call: CallInfo,
    (data, status, request_id): (Value, u16, Option<String>),
) -> Result<T, BkError> {
    serde_path_to_error::deserialize::<_, T>(data).map_err(|e| {
        let path = e.path().to_string();
        BkError::Decode {
            call,
            status,
            request_id,
            path: if path == "." {
                "data".into()
            } else {
                format!("data.{path}")
            },
            message: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bk::System;
    use crate::bk::config::Secret;
    use crate::bk::error::ErrorClass;
    use serde::Deserialize;

    const CREATE: CallInfo = CallInfo {
        system: System::Gsekit,
        endpoint: "create_job",
        kind: CallKind::Create,
    };
    const POLL: CallInfo = CallInfo {
        system: System::Bkflow,
        endpoint: "get_task_states",
        kind: CallKind::Safe,
    };

    fn redactor() -> Redactor {
        Redactor::new(&Credentials {
            app_code: "app".into(),
            app_secret: Secret::new("s3cr3t-planted"),
            user: UserAuth::AccessToken(Secret::new("tok-planted")),
            tenant_id: None,
        })
    }

    fn decode(
        call: CallInfo,
        status: u16,
        headers: &[(&'static str, &str)],
        body: &str,
    ) -> Result<Value, BkError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(*k, v);
            }
        }
        decode_envelope(call, status, &h, body.as_bytes(), &redactor()).map(|(d, _, _)| d)
    }

    #[derive(Deserialize, Debug)]
    struct JobId {
        #[allow(dead_code)]
        job_id: i64,
    }

    #[test]
    fn success_with_int_string_or_absent_code() -> Result<(), BkError> {
        for body in [
            r#"{"result":true,"code":0,"message":"","data":{"job_id":1}}"#,
            r#"{"result":true,"code":"0","message":"","data":{"job_id":1},"trace_id":"t"}"#,
            r#"{"result":true,"message":"success","data":{"job_id":1}}"#,
        ] {
            let d = decode(CREATE, 200, &[], body)?;
            assert_eq!(d["job_id"], 1);
        }
        Ok(())
    }

    #[test]
    fn result_false_keeps_code_message_and_request_id() {
        let e = decode(
            POLL,
            200,
            &[],
            r#"{"result":false,"code":"4102005","message":"job not exist(4102005)","data":null,"request_id":"r-1"}"#,
        );
        match e {
            Err(BkError::Api(a)) => {
                assert_eq!(a.code, Some(Code::Str("4102005".into())));
                assert_eq!(a.message, "job not exist(4102005)");
                assert_eq!(a.request_id.as_deref(), Some("r-1"));
                assert_eq!(a.status, 200);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn result_false_without_code_is_rejected() {
        // BKFlow space check: HTTP 403, no code.
        let e = decode(
            CREATE,
            403,
            &[],
            r#"{"result":false,"message":"no permission"}"#,
        );
        let e = e.err().map(|e| (e.class(), e.code().cloned()));
        assert_eq!(e, Some((ErrorClass::Rejected, None)));
    }

    #[test]
    fn gateway_error_from_header_and_body() {
        let e = decode(
            CREATE,
            429,
            &[
                ("X-Bkapi-Error-Code", "1642903"),
                ("X-Bkapi-Request-ID", "gw-1"),
                ("Retry-After", "3"),
            ],
            r#"{"code":1642903,"code_name":"RATE_LIMIT_RESTRICTION","message":"too many","result":false,"data":null}"#,
        );
        let e = match e {
            Err(e) => e,
            Ok(v) => panic!("{v}"),
        };
        assert!(e.is_rate_limited());
        assert_eq!(e.class(), ErrorClass::Transient);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.request_id(), Some("gw-1"));
        // Header only, body not JSON (e.g. an nginx page in front).
        let e = decode(CREATE, 504, &[("X-Bkapi-Error-Code", "1650401")], "<html>");
        assert_eq!(e.err().map(|e| e.class()), Some(ErrorClass::Ambiguous));
    }

    #[test]
    fn non_json_answers() {
        let e = decode(CREATE, 502, &[], "<html>bad gateway</html>");
        assert!(matches!(e, Err(BkError::Http { status: 502, .. })));
        assert_eq!(e.err().map(|e| e.class()), Some(ErrorClass::Ambiguous));
        let e = decode(CREATE, 200, &[], "<html>login</html>");
        assert_eq!(e.err().map(|e| e.class()), Some(ErrorClass::Ambiguous));
        let e = decode(POLL, 200, &[], r#"{"code":0,"data":{}}"#);
        match e {
            Err(e @ BkError::Decode { .. }) => {
                assert_eq!(e.class(), ErrorClass::Transient);
                assert!(!e.retryable());
            }
            other => panic!("{other:?}"),
        }
        let e = decode(POLL, 404, &[], "not found");
        assert_eq!(e.err().map(|e| e.class()), Some(ErrorClass::Rejected));
    }

    #[test]
    fn data_errors_name_the_path() {
        let d = decode(
            CREATE,
            200,
            &[],
            r#"{"result":true,"code":0,"data":{"job_id":"x"}}"#,
        );
        let Ok(d) = d else { panic!("{d:?}") };
        let e = decode_data::<JobId>(CREATE, (d, 200, Some("r".into())));
        match e {
            Err(e @ BkError::Decode { .. }) => {
                assert!(e.to_string().contains("data.job_id"), "{e}");
                assert_eq!(e.class(), ErrorClass::Ambiguous);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn upstream_text_is_redacted() {
        let e = decode(
            CREATE,
            200,
            &[],
            r#"{"result":false,"code":1306406,"message":"bad bk_app_secret s3cr3t-planted / tok-planted"}"#,
        );
        let e = match e {
            Err(e) => e,
            Ok(v) => panic!("{v}"),
        };
        let text = format!("{e} {e:?}");
        assert!(!text.contains("s3cr3t-planted"), "{text}");
        assert!(!text.contains("tok-planted"), "{text}");
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("Retry-After", HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "Retry-After",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        h.insert("Retry-After", HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }
}
