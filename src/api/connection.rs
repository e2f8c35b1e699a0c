//! `BkConnection`: where and how to reach BlueKing (`docs/blueking.md`).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Condition;
use super::validation::{FieldErrors, FieldPath, check_range};

/// Gateway names used with `gateway.urlTemplate` when a system does not override it.
pub const DEFAULT_GATEWAY_NAMES: [(&str, &str); 4] = [
    ("gsekit", "bk-gsekit"),
    ("bkflow", "bk-flow"),
    ("nodeman", "bk-nodeman"),
    ("job", "bk-job"),
];

/// How to reach the four BlueKing systems and with which credentials. Jobs may only use a
/// connection in their own namespace, and a connection only a Secret in its own namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "bkops.io",
    version = "v1alpha1",
    kind = "BkConnection",
    namespaced,
    status = "BkConnectionStatus",
    shortname = "bkconn",
    doc = "Where and how bkops reaches BlueKing: API gateway or legacy ESB per system, credentials Secret, tenant, limits.",
    printcolumn = r#"{"name":"Gateway","type":"string","jsonPath":".spec.gateway.urlTemplate"}"#,
    printcolumn = r#"{"name":"ESB","type":"string","jsonPath":".spec.esbUrl"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".spec.credentialsSecretRef.name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    cel,
    validation = Rule::new("has(self.gateway) || has(self.esbUrl) || (has(self.gsekit) && has(self.gsekit.url)) || (has(self.bkflow) && has(self.bkflow.url)) || (has(self.nodeman) && has(self.nodeman.url)) || (has(self.job) && has(self.job.url))").message("give gateway.urlTemplate, esbUrl, or a url per system")
)]
#[serde(rename_all = "camelCase")]
pub struct BkConnectionSpec {
    /// API gateway for every system in gateway mode: a URL template holding `{api_name}` plus a
    /// stage, e.g. `https://bkapi.example.com/api/{api_name}/` and `prod` give
    /// `https://bkapi.example.com/api/bk-job/prod/` for JOB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,

    /// Root URL of the legacy ESB (`{esbUrl}/api/c/compapi/v2/...`), used by systems whose
    /// `mode` is `esb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esb_url: Option<String>,

    /// GSEKit (gateway `bk-gsekit`; ESB `gsekit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsekit: Option<SystemEndpoint>,
    /// BKFlow (gateway `bk-flow`, or `bk-flow-engine` on classic deployments; no ESB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bkflow: Option<SystemEndpoint>,
    /// NodeMan (gateway `bk-nodeman`; ESB `nodeman`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodeman: Option<SystemEndpoint>,
    /// JOB (gateway `bk-job`; ESB `job` for v2 and `jobv3` for v3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<SystemEndpoint>,

    /// The Secret (same namespace) holding `bk_app_code`, `bk_app_secret` and one of
    /// `bk_username`, `bk_token` or `access_token`.
    pub credentials_secret_ref: SecretRef,

    /// Tenant id sent as `X-Bk-Tenant-Id` (JOB with multi-tenancy answers 401 without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,

    /// Default BKFlow space for `Taskflow`s that give no `spaceId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::api::common::MAX_BK_ID))]
    pub bkflow_space_id: Option<i64>,

    /// UTC offset of the naive timestamps NodeMan and JOB v2 return (their SaaS `TIME_ZONE`),
    /// e.g. `+08:00` (the default, upstream's Asia/Shanghai). Used to search for a lost create
    /// in the right time window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[+-][0-9]{2}:[0-9]{2}$"))]
    pub time_zone_offset: Option<String>,

    /// Timeout of one HTTP call, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: Option<u32>,

    /// PEM CA bundle to trust for HTTPS endpoints, in addition to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,

    /// Client-side limits for calls through this connection, shared by every job that uses it.
    /// Creates and the calls that move a job (start, cancel) take the next token before any
    /// waiting poll; a poll gives way to them for at most 5 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// Gateway URL template and stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// URL with `{api_name}`, e.g. `https://bkapi.example.com/api/{api_name}/`.
    #[schemars(length(min = 1))]
    pub url_template: String,
    /// Gateway stage (default `prod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// How to reach one system.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemEndpoint {
    /// `gateway` (default) or `esb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<EndpointMode>,
    /// Full base URL for this system, overriding the template: in gateway mode including the
    /// stage (`https://bkapi.example.com/api/bk-job/prod/`), in ESB mode the ESB root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Gateway name to put into `gateway.urlTemplate` instead of the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_name: Option<String>,
}

/// Gateway or legacy ESB.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// The API gateway (APISIX): `X-Bkapi-Authorization` header only.
    #[default]
    Gateway,
    /// The legacy ESB (`/api/c/compapi/v2/...`).
    Esb,
}

/// A Secret in the connection's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Must be omitted or equal to the connection's namespace: a connection may only use a
    /// Secret in its own namespace, and any other value is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Client-side call limits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained calls per second (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub qps: Option<u32>,
    /// Burst size (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub burst: Option<u32>,
    /// Calls in flight at once (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_in_flight: Option<u32>,
}

/// Status of a connection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BkConnectionStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl BkConnectionSpec {
    /// Every problem with this spec, with its field path.
    pub fn validate(&self) -> FieldErrors {
        let mut errors = FieldErrors::default();
        let spec = FieldPath::spec();
        if let Some(gw) = &self.gateway {
            if !gw.url_template.contains("{api_name}") {
                errors.push(
                    spec.child("gateway").child("urlTemplate"),
                    "must contain {api_name}",
                );
            }
            check_url(
                &mut errors,
                spec.child("gateway").child("urlTemplate"),
                &gw.url_template.replace("{api_name}", "x"),
            );
        }
        if let Some(esb) = &self.esb_url {
            check_url(&mut errors, spec.child("esbUrl"), esb);
        }
        for (name, ep) in self.endpoints() {
            let path = spec.child(name);
            let mode = ep.and_then(|e| e.mode).unwrap_or_default();
            let url = ep.and_then(|e| e.url.as_deref());
            if let Some(u) = url {
                check_url(&mut errors, path.child("url"), u);
            }
            if mode == EndpointMode::Esb && name == "bkflow" {
                errors.push(
                    path.child("mode"),
                    "BKFlow has no legacy ESB API; use gateway mode",
                );
            }
            if ep.is_some() && url.is_none() {
                match mode {
                    EndpointMode::Gateway if self.gateway.is_none() => errors.push(
                        path.child("url"),
                        "is required when spec.gateway is not set",
                    ),
                    EndpointMode::Esb if self.esb_url.is_none() => errors.push(
                        path.child("url"),
                        "is required in esb mode when spec.esbUrl is not set",
                    ),
                    _ => {}
                }
            }
        }
        if self.gateway.is_none()
            && self.esb_url.is_none()
            && self
                .endpoints()
                .iter()
                .all(|(_, e)| e.and_then(|e| e.url.as_ref()).is_none())
        {
            errors.push(
                spec.clone(),
                "give gateway.urlTemplate, esbUrl, or a url per system",
            );
        }
        if self.credentials_secret_ref.name.trim().is_empty() {
            errors.push(
                spec.child("credentialsSecretRef").child("name"),
                "must not be empty",
            );
        }
        if let Some(tz) = &self.time_zone_offset
            && parse_offset(tz).is_none()
        {
            errors.push(
                spec.child("timeZoneOffset"),
                format!("must look like +08:00, got {tz:?}"),
            );
        }
        if let Some(t) = self.timeout_seconds {
            check_range(&mut errors, spec.child("timeoutSeconds"), t.into(), 1, 600);
        }
        if let Some(pem) = &self.ca_bundle
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            errors.push(
                spec.child("caBundle"),
                "must be PEM (-----BEGIN CERTIFICATE-----)",
            );
        }
        errors
    }

    /// The per-system settings by field name.
    pub fn endpoints(&self) -> [(&'static str, Option<&SystemEndpoint>); 4] {
        [
            ("gsekit", self.gsekit.as_ref()),
            ("bkflow", self.bkflow.as_ref()),
            ("nodeman", self.nodeman.as_ref()),
            ("job", self.job.as_ref()),
        ]
    }
}

fn check_url(errors: &mut FieldErrors, path: FieldPath, value: &str) {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(u) => errors.push(path, format!("must be http or https, got {}", u.scheme())),
        Err(e) => errors.push(path, format!("is not a URL: {e}")),
    }
}

/// `+08:00` → seconds east of UTC.
pub fn parse_offset(text: &str) -> Option<i32> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = text.get(1..)?.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
}
