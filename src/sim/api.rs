//! The control API's data: fault rules, job behaviours, call counts and job views, as the
//! simulator serves them under `/_sim/` and [`super::SimControl`] sends and reads them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::System;

/// Which system a fault rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SystemSel {
    /// Every system.
    #[default]
    Any,
    /// GSEKit only.
    Gsekit,
    /// BKFlow only.
    Bkflow,
    /// NodeMan only.
    Nodeman,
    /// JOB only.
    Job,
}

/// What a fault does to a matching request.
///
/// JSON is externally tagged: `{"commit_then_timeout": {"delay_ms": 3000}}`,
/// `"commit_then_drop"` (or `{"commit_then_drop": null}`), `{"http_status": {"status": 502}}`,
/// `"rate_limit"`, `{"delay_ms": 500}`, `{"reject": {"code": 1244032, "message": "quota"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Carry out the request (a create creates the job), then hold the answer for `delay_ms`
    /// so the client times out; the answer is sent afterwards if anyone still listens.
    CommitThenTimeout {
        /// How long to hold the answer.
        delay_ms: u64,
    },
    /// Carry out the request, then close the connection without sending a single byte.
    CommitThenDrop,
    /// Answer with a gateway error of this HTTP status without carrying out the request. `code`
    /// defaults per status (500 → 1650001, 502 → 1650200, 503 → 1650300, 504 → 1650401).
    HttpStatus {
        /// HTTP status to answer with.
        status: u16,
        /// Gateway error code (ESB: ESB code) to put in the body.
        #[serde(default)]
        code: Option<i64>,
    },
    /// Answer 429 with the gateway body 1642901 (ESB: 1306429), without carrying out the request.
    RateLimit,
    /// Wait this many milliseconds, then handle the request normally.
    DelayMs(u64),
    /// Answer with the system's own business error envelope (HTTP 200, `result: false`) and this
    /// code, without carrying out the request. GSEKit gets the code as a string, as upstream.
    Reject {
        /// Error code.
        code: i64,
        /// Error message.
        #[serde(default)]
        message: Option<String>,
    },
}

/// A fault rule: which requests it matches, what it does, how often.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// System the rule applies to (`any` by default).
    #[serde(default)]
    pub system: SystemSel,
    /// Endpoint name (`create`, `start`, `status`, `tasks`, `list`, `cancel`, `detail`,
    /// `node_detail`, `batch_status`, `pause`, `resume`, `operate`, `log`), or `*` for all.
    /// `log` is the per-host log of JOB (v3 `batch_get_job_instance_ip_log` and
    /// `get_job_instance_ip_log`, v2 `get_job_instance_log`) and NodeMan (`job/{id}/log/`);
    /// GSEKit's per-process results are `tasks`, BKFlow's node states `status` and its node
    /// failure texts `node_detail`.
    #[serde(default = "star")]
    pub endpoint: String,
    /// What to do.
    pub action: FaultAction,
    /// How many matching calls it applies to; `None` means until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

fn star() -> String {
    "*".to_string()
}

/// How the next created jobs of a system behave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    /// The system whose next jobs this shapes.
    pub system: System,
    /// How many targets fail (the last ones).
    #[serde(default)]
    pub failed_targets: Option<u32>,
    /// The job stops for a person (BKFlow NODE_SUSPENDED, JOB status 7) until approved via
    /// `/_sim/jobs/{system}/{id}/approve`. Rejected for GSEKit and NodeMan, which upstream
    /// never wait for a person.
    #[serde(default)]
    pub wait_for_user: bool,
    /// Run duration (overrides the configured job duration).
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Number of targets, where the request does not name them itself.
    #[serde(default)]
    pub targets: Option<u32>,
    /// How many creates it applies to; `None` means until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

/// One line of [`CallCounts::endpoints`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCount {
    /// System.
    pub system: System,
    /// Endpoint name, as in [`FaultRule::endpoint`].
    pub endpoint: String,
    /// Requests seen.
    pub count: u64,
}

/// One line of [`CallCounts::paths`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathCount {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Requests seen.
    pub count: u64,
}

/// Every request that reached a business endpoint, including ones that failed auth or were
/// faulted; control-API calls and unknown paths are not counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts {
    /// All counted requests.
    pub total: u64,
    /// Per system and endpoint.
    pub endpoints: Vec<EndpointCount>,
    /// Per method and path.
    pub paths: Vec<PathCount>,
}

impl CallCounts {
    /// Requests seen for one system and endpoint.
    pub fn get(&self, system: System, endpoint: &str) -> u64 {
        self.endpoints
            .iter()
            .filter(|e| e.system == system && e.endpoint == endpoint)
            .map(|e| e.count)
            .sum()
    }
}

/// A job as the control API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// System.
    pub system: System,
    /// The id the system gave it.
    pub id: u64,
    /// The upstream state as the status call would report it now (JOB: the status code as text).
    pub state: String,
    /// Whether the job has been started (BKFlow and JOB create jobs that are not).
    pub started: bool,
    /// `gateway` or `esb`.
    pub mode: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// When the job's plan ends (RFC 3339), once it has started: the moment the status call
    /// starts reporting the job finished. Benchmarks compare it with when the operator says so.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The create request body as received.
    pub created: Value,
}
