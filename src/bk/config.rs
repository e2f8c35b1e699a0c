//! Where and how the client reaches BlueKing: endpoints, credentials, limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::error::BkError;

/// A secret string (app secret, `bk_token`, `access_token`).
///
/// `Debug` and `Display` print `***` and there is no `Serialize`, so a secret cannot leak through
/// logs, error text or a status write by accident; [`Secret::expose`] is the one explicit way out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value. Call it only where the value goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How the calling user is identified to the gateway or ESB.
///
/// Whether a bare username is accepted is a per-gateway setting (the app "skip user auth"
/// whitelist); without it, a `bk_token` or `access_token` is needed.
#[derive(Clone, Debug)]
pub enum UserAuth {
    /// `bk_username`: accepted only where the gateway trusts the app to name the user.
    Username(String),
    /// `bk_token`: a login session token.
    BkToken(Secret),
    /// `access_token`: an OAuth access token.
    AccessToken(Secret),
}

/// App and user credentials, sent in the `X-Bkapi-Authorization` header on every call.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `bk_app_code`.
    pub app_code: String,
    /// `bk_app_secret`.
    pub app_secret: Secret,
    /// The user part of the credentials.
    pub user: UserAuth,
    /// Sent as `X-Bk-Tenant-Id` when set; JOB answers 401 without it on multi-tenant deployments.
    pub tenant_id: Option<String>,
}

/// Which front door a system is reached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The API gateway (APISIX): base URL `https://bkapi.example.com/api/<gateway>/<stage>/`.
    Gateway,
    /// The legacy ESB: base URL is the host root, calls go to `/api/c/compapi/v2/...`.
    Esb,
}

/// How to reach one BlueKing system.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Gateway or legacy ESB.
    pub mode: Mode,
    /// Gateway: the gateway's stage URL (e.g. `https://bkapi.example.com/api/bk-gsekit/prod/`).
    /// ESB: the host root (e.g. `https://paas.example.com/`).
    pub base_url: Url,
}

impl Endpoint {
    /// A gateway endpoint at the stage URL `base_url`.
    pub fn gateway(base_url: Url) -> Self {
        Endpoint {
            mode: Mode::Gateway,
            base_url,
        }
    }

    /// A legacy ESB endpoint at the host root `base_url`.
    pub fn esb(base_url: Url) -> Self {
        Endpoint {
            mode: Mode::Esb,
            base_url,
        }
    }

    /// The base URL with a trailing slash, so relative resource paths are appended to it
    /// instead of replacing its last segment (`Url::join` semantics).
    pub(crate) fn normalized_base(&self) -> Result<Url, BkError> {
        let mut url = self.base_url.clone();
        if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
            return Err(BkError::Config(format!(
                "base URL {url} must be an http(s) URL"
            )));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url.set_query(None);
        url.set_fragment(None);
        Ok(url)
    }
}

/// Told, for every call attempt, how long it waited for its connection's limits before it was
/// sent (the rate limiter's token, a slot among the calls in flight, a 429's pause), and whether
/// it moves a job (a create, start, revoke, terminate) rather than reads.
#[derive(Clone)]
pub struct WaitObserver(pub Arc<dyn Fn(bool, Duration) + Send + Sync>);

impl fmt::Debug for WaitObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WaitObserver")
    }
}

/// Everything [`super::BkClient::new`] needs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// GSEKit (gateway `bk-gsekit` or ESB `gsekit`); `None` when not used.
    pub gsekit: Option<Endpoint>,
    /// BKFlow (gateway only: `bk-flow` or `bk-flow-engine`); `None` when not used.
    pub bkflow: Option<Endpoint>,
    /// NodeMan (gateway `bk-nodeman` or ESB `nodeman`); `None` when not used.
    pub nodeman: Option<Endpoint>,
    /// JOB (gateway `bk-job` or ESB `job`/`jobv3`); `None` when not used.
    pub job: Option<Endpoint>,
    /// App and user credentials.
    pub credentials: Credentials,
    /// Whole-request timeout (connect, send, read the body). A create that times out is
    /// ambiguous, so keep it above the backend's usual latency.
    pub timeout: Duration,
    /// Sustained request rate for this client (all systems together).
    pub qps: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// Calls allowed in flight at once for this client.
    pub max_in_flight: usize,
    /// Extra trusted CA certificates (PEM, one or more), added to the platform roots.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// ESB mode only: also put the credentials in POST bodies (`bk_app_code`, ...), for ESB
    /// installations that do not read `X-Bkapi-Authorization`. Off by default because a body is
    /// more likely to be logged somewhere than a header.
    pub esb_credentials_in_body: bool,
    /// UTC offset (seconds) of timestamps sent without one (NodeMan, GSEKit list rows, JOB v2
    /// `YYYY-MM-DD HH:MM:SS`): the SaaS `TIME_ZONE`, Asia/Shanghai (+08:00) by default.
    pub naive_time_offset_secs: i32,
    /// Told how long each call waited for the limits above; `None`: nobody is.
    pub on_wait: Option<WaitObserver>,
}

impl ClientConfig {
    /// A configuration with no endpoints and conservative defaults: 30 s timeout, 10 requests
    /// per second with a burst of 20, 8 calls in flight.
    pub fn new(credentials: Credentials) -> Self {
        ClientConfig {
            gsekit: None,
            bkflow: None,
            nodeman: None,
            job: None,
            credentials,
            timeout: Duration::from_secs(30),
            qps: 10.0,
            burst: 20,
            max_in_flight: 8,
            ca_bundle_pem: None,
            esb_credentials_in_body: false,
            naive_time_offset_secs: super::de::BK_DEFAULT_OFFSET_SECS,
            on_wait: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2-planted");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2-planted");
        let creds = Credentials {
            app_code: "app".into(),
            app_secret: s.clone(),
            user: UserAuth::BkToken(Secret::new("tok-planted")),
            tenant_id: None,
        };
        let dbg = format!("{:?}", ClientConfig::new(creds));
        assert!(!dbg.contains("hunter2-planted"), "{dbg}");
        assert!(!dbg.contains("tok-planted"), "{dbg}");
    }

    #[test]
    fn base_url_gets_trailing_slash() -> Result<(), Box<dyn std::error::Error>> {
        let e = Endpoint::gateway(Url::parse("https://bkapi.example.com/api/bk-job/prod")?);
        let base = e.normalized_base()?;
        assert_eq!(base.as_str(), "https://bkapi.example.com/api/bk-job/prod/");
        assert_eq!(
            base.join("api/v3/execute_job_plan")?.as_str(),
            "https://bkapi.example.com/api/bk-job/prod/api/v3/execute_job_plan"
        );
        Ok(())
    }
}
