//! BlueKing's answers: the envelope (`result`, `code`, `message`, `data`) decoded into data or
//! the error it stands for, with upstream text redacted and cut short.

use std::time::Duration;

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::config::{Credentials, UserAuth};
use super::error::{ApiError, BkError, CallInfo, Code};

/// Longest upstream text kept in an error.
const MAX_TEXT: usize = 1000;

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

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(crate) fn request_id_from_headers(headers: &HeaderMap) -> Option<String> {
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
    use crate::bk::CallKind;
    use crate::bk::System;
    use crate::bk::config::Secret;
    use crate::bk::error::ErrorClass;
    use http::HeaderValue;
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
