//! The client's one error type and how each error is classified.

use std::fmt;
use std::time::Duration;

use super::System;

/// What a caller should do about an error. The run lifecycle keys its exactly-once logic on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Nothing happened that matters and trying again later may work: timeouts, 5xx, 429 and
    /// connection errors on calls that are safe to repeat. On a **create** it is only returned
    /// when BlueKing provably created nothing (connection refused before sending, a gateway or
    /// ESB rate limit, JOB's running-job quota), so a new attempt cannot duplicate a job.
    Transient,
    /// Refused, and nothing ran: validation, authentication (401/403), permission, a documented
    /// business error (plan or job not found, ...), a bad configuration. Repeating the same call
    /// fails the same way.
    Rejected,
    /// Only for creates: the job may or may not exist (timeout or reset after sending, 5xx,
    /// a success answer that could not be decoded). Never resubmit; search for it instead.
    Ambiguous,
}

/// The `code` field of a BlueKing envelope, which is an int in some systems and a string in
/// others (GSEKit app errors `"4102005"`, BKFlow `"0"` and DRF codes such as `"not_found"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// A numeric code.
    Int(i64),
    /// A string code, kept verbatim.
    Str(String),
}

impl Code {
    /// The code as a number, also for numeric strings (`"4102005"` → 4102005).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Code::Int(i) => Some(*i),
            Code::Str(s) => s.trim().parse().ok(),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Code::Int(i) => write!(f, "{i}"),
            Code::Str(s) => f.write_str(s),
        }
    }
}

/// Whether a call may be repeated. It decides retries and how failures are classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// Creates a job. Never retried; an unclear outcome is [`ErrorClass::Ambiguous`].
    Create,
    /// An operation on a job whose repetition is harmless (BKFlow start, JOB start,
    /// revoke/terminate). Retried on transient errors; like a create, it takes a rate-limit
    /// token before any waiting read.
    Operate,
    /// Reads and lists. Retried on transient errors.
    Safe,
}

impl CallKind {
    /// Creates and operations: the calls that move a job, served before reads at the
    /// connection's rate limit.
    pub fn moves_a_job(self) -> bool {
        matches!(self, CallKind::Create | CallKind::Operate)
    }
}

/// Which call failed: system, endpoint name and kind. Part of every call error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallInfo {
    /// The BlueKing system called.
    pub system: System,
    /// A stable endpoint name (`create_job`, `get_task_states`, ...), fit for metric labels.
    pub endpoint: &'static str,
    /// Create or safe-to-repeat.
    pub kind: CallKind,
}

impl fmt::Display for CallInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.system, self.endpoint)
    }
}

/// How a request failed below HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// The connection could not be established; the request was never sent.
    Connect,
    /// The timeout passed; the request may have been received.
    Timeout,
    /// Anything else after connecting (reset, closed mid-answer, TLS, ...).
    Other,
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportFailure::Connect => "could not connect",
            TransportFailure::Timeout => "timed out",
            TransportFailure::Other => "connection failed",
        })
    }
}

/// Every error of the BlueKing client. Secrets never appear in it: upstream text is redacted
/// before it is stored, and credentials are never part of URLs.
#[derive(Debug, thiserror::Error)]
pub enum BkError {
    /// The client configuration is unusable (bad URL, missing endpoint, BKFlow over ESB, ...).
    #[error("BlueKing client configuration: {0}")]
    Config(String),
    /// The request is invalid before anything is sent (e.g. GSEKit without any scope, which
    /// upstream would answer with an ambiguous 500).
    #[error("invalid BlueKing request: {0}")]
    InvalidRequest(String),
    /// No HTTP answer.
    #[error("{call}: {failure}: {detail}")]
    Transport {
        /// The call.
        call: CallInfo,
        /// What went wrong.
        failure: TransportFailure,
        /// The error chain, as text.
        detail: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// An envelope with `result: false` (or a gateway error answer). Boxed: it is the largest
    /// variant and errors travel through every `Result`.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// A non-2xx answer without a BlueKing envelope.
    #[error("{call}: HTTP {status}{}: {body}", rid(request_id))]
    Http {
        /// The call.
        call: CallInfo,
        /// HTTP status.
        status: u16,
        /// Request id from the headers, when given.
        request_id: Option<String>,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
        /// The start of the body, redacted.
        body: String,
    },
    /// A create that was not sent: it waited for the rate limit's pause or a slot among the calls
    /// in flight until past the time it had to be sent by (a create sent long after its intent
    /// could land after another operator's search concluded that it was never made).
    #[error(
        "{call}: not sent: it waited {waited:?} to be sent and had {window:?}; nothing was sent"
    )]
    NotSent {
        /// The call.
        call: CallInfo,
        /// How long it waited.
        waited: Duration,
        /// How long it could wait.
        window: Duration,
    },
    /// A 2xx answer that could not be decoded (not JSON, no `result`, `data` of the wrong shape).
    #[error(
        "{call}: undecodable answer (HTTP {status}{}) at `{path}`: {message}",
        rid(request_id)
    )]
    Decode {
        /// The call.
        call: CallInfo,
        /// HTTP status.
        status: u16,
        /// Request id, when known.
        request_id: Option<String>,
        /// Where decoding failed (`data.job_info.status`); `.` for the whole body.
        path: String,
        /// What was wrong.
        message: String,
    },
}

/// The details of a refused call ([`BkError::Api`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{call}: BlueKing answered result=false (HTTP {status}, code {}{}): {message}",
    opt(code),
    rid(request_id)
)]
pub struct ApiError {
    /// The call.
    pub call: CallInfo,
    /// HTTP status.
    pub status: u16,
    /// `code` from the body or `X-Bkapi-Error-Code`; absent in some BKFlow answers.
    pub code: Option<Code>,
    /// Gateway `code_name` (`UNAUTHORIZED`, ...), when given.
    pub code_name: Option<String>,
    /// `message`, redacted and truncated.
    pub message: String,
    /// `X-Bkapi-Request-ID` / `request_id` / `job_request_id` / `trace_id`.
    pub request_id: Option<String>,
    /// `Retry-After`, when given.
    pub retry_after: Option<Duration>,
}

fn opt(code: &Option<Code>) -> String {
    code.as_ref()
        .map_or_else(|| "absent".to_owned(), ToString::to_string)
}

fn rid(request_id: &Option<String>) -> String {
    request_id
        .as_ref()
        .map_or_else(String::new, |r| format!(", request id {r}"))
}

impl BkError {
    /// How to treat this error; see [`ErrorClass`] and the table in [`classify_answer`].
    pub fn class(&self) -> ErrorClass {
        match self {
            BkError::Config(_) | BkError::InvalidRequest(_) => ErrorClass::Rejected,
            BkError::Transport { call, failure, .. } => match failure {
                TransportFailure::Connect => ErrorClass::Transient,
                _ => maybe_ran(call.kind),
            },
            BkError::Api(a) => classify_answer(a.call.kind, a.status, a.code.as_ref()),
            BkError::Http { call, status, .. } => classify_answer(call.kind, *status, None),
            BkError::Decode { call, .. } => maybe_ran(call.kind),
            BkError::NotSent { .. } => ErrorClass::Transient,
        }
    }

    /// Whether the client retries this error by itself (for safe calls): transient errors
    /// except undecodable answers, which a repeat would not fix.
    pub(crate) fn retryable(&self) -> bool {
        self.class() == ErrorClass::Transient && !matches!(self, BkError::Decode { .. })
    }

    /// Whether BlueKing throttled us (HTTP 429, gateway 1642901–1642904, ESB 1306429).
    pub fn is_rate_limited(&self) -> bool {
        match self {
            BkError::Api(a) => {
                a.status == 429
                    || a.code
                        .as_ref()
                        .and_then(Code::as_int)
                        .is_some_and(is_rate_code)
            }
            BkError::Http { status, .. } => *status == 429,
            _ => false,
        }
    }

    /// Whether BlueKing said the job does not exist (JOB 1244006, GSEKit 4102005, DRF
    /// `not_found`). Best effort: other systems' not-found codes are not documented.
    pub fn is_not_found(&self) -> bool {
        match self {
            BkError::Api(a) => a.code.as_ref().is_some_and(|c| {
                matches!(c.as_int(), Some(1_244_006 | 4_102_005))
                    || matches!(c, Code::Str(s) if s == "not_found")
            }),
            _ => false,
        }
    }

    /// The call that failed, if the error came from one.
    pub fn call(&self) -> Option<CallInfo> {
        match self {
            BkError::Config(_) | BkError::InvalidRequest(_) => None,
            BkError::Api(a) => Some(a.call),
            BkError::Transport { call, .. }
            | BkError::Http { call, .. }
            | BkError::Decode { call, .. }
            | BkError::NotSent { call, .. } => Some(*call),
        }
    }

    /// The BlueKing `code`, when there was one.
    pub fn code(&self) -> Option<&Code> {
        match self {
            BkError::Api(a) => a.code.as_ref(),
            _ => None,
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            BkError::Api(a) => Some(a.status),
            BkError::Http { status, .. } | BkError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request id to quote to BlueKing operators.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            BkError::Api(a) => a.request_id.as_deref(),
            BkError::Http { request_id, .. } | BkError::Decode { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }

    /// How long BlueKing asked us to wait (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BkError::Api(a) => a.retry_after,
            BkError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short, stable category for metric labels and Event reasons (no free text).
    pub fn category(&self) -> &'static str {
        match self {
            BkError::Config(_) => "config",
            BkError::InvalidRequest(_) => "invalid_request",
            BkError::Transport { failure, .. } => match failure {
                TransportFailure::Connect => "connect",
                TransportFailure::Timeout => "timeout",
                TransportFailure::Other => "connection",
            },
            BkError::Api(_) if self.is_rate_limited() => "rate_limited",
            BkError::Api(_) => "api",
            BkError::Http { .. } => "http",
            BkError::Decode { .. } => "decode",
            BkError::NotSent { .. } => "not_sent",
        }
    }
}

fn is_rate_code(code: i64) -> bool {
    matches!(code, 1_642_901..=1_642_904 | 1_306_429)
}

/// A failure after the request may have reached the backend: a create may have happened.
fn maybe_ran(kind: CallKind) -> ErrorClass {
    match kind {
        CallKind::Create => ErrorClass::Ambiguous,
        CallKind::Operate | CallKind::Safe => ErrorClass::Transient,
    }
}

/// Classifies an HTTP answer that is an error (`result: false`, or non-2xx without envelope).
///
/// | answer | class |
/// |---|---|
/// | HTTP 429, gateway 1642901–1642904, ESB 1306429 | Transient (the gateway/ESB refused before forwarding) |
/// | JOB 1244032–1244034 (running-job quota) | Transient (nothing ran; the quota frees when jobs end) |
/// | gateway 1640xxx–1641xxx (args, auth, permission, tenant, not found, size) | Rejected |
/// | gateway 1650xxx (500/502/503/504/508 between gateway and backend) | create: Ambiguous, else Transient |
/// | ESB 1306000 COMMON, 1306201 third-party error, 1306408 APIGW error | create: Ambiguous, else Transient |
/// | other ESB 1306xxx (operator required, permission, not found, argument, host not found) | Rejected |
/// | HTTP 5xx or 408 | create: Ambiguous, else Transient |
/// | code 500 (BKFlow's catch-all) or JOB 1240002 INTERNAL_ERROR | create: Ambiguous, else Transient |
/// | HTTP 3xx/4xx without a code above, other codes with `result: false` | Rejected |
/// | HTTP 2xx without `result` (handled as a decode error) | create: Ambiguous, else Transient |
///
/// Everything with `result: false` not listed is a business error raised by the upstream
/// handler (validation, permission, "plan not exist" JOB 1244012, "job not exist" GSEKit
/// 4102005, NodeMan 38xxxxx, BKFlow 400/DRF codes): those handlers validate before they write.
pub fn classify_answer(kind: CallKind, status: u16, code: Option<&Code>) -> ErrorClass {
    let num = code.and_then(Code::as_int);
    if status == 429 || num.is_some_and(is_rate_code) {
        return ErrorClass::Transient;
    }
    match num {
        Some(1_244_032..=1_244_034) => return ErrorClass::Transient,
        Some(1_640_000..=1_641_999) => return ErrorClass::Rejected,
        Some(1_650_000..=1_659_999) => return maybe_ran(kind),
        Some(1_306_000 | 1_306_201 | 1_306_408) => return maybe_ran(kind),
        Some(1_306_001..=1_306_999) => return ErrorClass::Rejected,
        _ => {}
    }
    if status >= 500 || status == 408 {
        return maybe_ran(kind);
    }
    if matches!(num, Some(500 | 1_240_002)) {
        return maybe_ran(kind);
    }
    ErrorClass::Rejected
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: CallKind = CallKind::Create;
    const S: CallKind = CallKind::Safe;

    fn i(c: i64) -> Option<Code> {
        Some(Code::Int(c))
    }
    fn s(c: &str) -> Option<Code> {
        Some(Code::Str(c.to_owned()))
    }

    #[test]
    fn classification_table() {
        use ErrorClass::*;
        let table: Vec<(CallKind, u16, Option<Code>, ErrorClass)> = vec![
            // rate limits: nothing was forwarded, for creates as well
            (C, 429, i(1642901), Transient),
            (C, 429, i(1642904), Transient),
            (C, 200, i(1642902), Transient), // bk_status_rewrite_200
            (C, 200, i(1306429), Transient),
            (S, 429, None, Transient),
            // JOB running-job quota
            (C, 200, i(1244032), Transient),
            (C, 200, i(1244034), Transient),
            // gateway refusals
            (C, 401, i(1640101), Rejected),
            (C, 403, i(1640301), Rejected),
            (C, 400, i(1640001), Rejected),
            (C, 404, i(1640401), Rejected),
            (C, 200, i(1640302), Rejected),
            // gateway ↔ backend failures
            (C, 504, i(1650401), Ambiguous),
            (S, 504, i(1650401), Transient),
            (C, 502, i(1650200), Ambiguous),
            (C, 200, i(1650001), Ambiguous),
            // ESB
            (C, 200, i(1306406), Rejected),
            (C, 200, i(1306402), Rejected),
            (C, 200, i(1306201), Ambiguous),
            (S, 200, i(1306201), Transient),
            (C, 200, i(1306000), Ambiguous),
            // plain HTTP
            (C, 500, None, Ambiguous),
            (S, 503, None, Transient),
            (C, 408, None, Ambiguous),
            (C, 403, None, Rejected), // BKFlow space check: no code
            (S, 401, None, Rejected),
            (C, 302, None, Rejected),
            // business errors
            (C, 200, s("4100001"), Rejected),
            (S, 200, s("4102005"), Rejected),
            (C, 200, i(3801001), Rejected),
            (C, 200, i(1244012), Rejected),
            (C, 200, i(1238001), Rejected),
            (C, 200, i(400), Rejected),
            (C, 200, s("invalid"), Rejected),
            (C, 200, None, Rejected),
            (C, 200, i(500), Ambiguous),
            (C, 200, s("500"), Ambiguous),
            (S, 200, i(500), Transient),
            (C, 200, i(1240002), Ambiguous),
        ];
        for (kind, status, code, want) in table {
            assert_eq!(
                classify_answer(kind, status, code.as_ref()),
                want,
                "{kind:?} {status} {code:?}"
            );
        }
    }

    #[test]
    fn error_text_names_call_code_and_request_id() {
        let e = BkError::Api(Box::new(ApiError {
            call: CallInfo {
                system: System::Job,
                endpoint: "execute_job_plan",
                kind: C,
            },
            status: 200,
            code: i(1244012),
            code_name: None,
            message: "plan not exist".into(),
            request_id: Some("abc".into()),
            retry_after: None,
        }));
        let text = e.to_string();
        assert!(text.contains("JOB execute_job_plan"), "{text}");
        assert!(text.contains("1244012"), "{text}");
        assert!(text.contains("request id abc"), "{text}");
        assert_eq!(e.class(), ErrorClass::Rejected);
        assert_eq!(e.category(), "api");
    }
}
