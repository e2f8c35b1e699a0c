//! `AgentJob`: a NodeMan job (seed `002`, upstream `POST /api/job/operate/`; plugin job types go
//! to `POST /api/plugin/operate/`).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, JobStatus};
use super::validation::{FieldErrors, FieldPath, check_len};

/// Restart, reload, upgrade or remove GSE agents and proxies, or operate plugins, with NodeMan.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "bkops.io",
    version = "v1alpha1",
    kind = "AgentJob",
    namespaced,
    status = "JobStatus",
    shortname = "ajob",
    category = "bkops",
    doc = "A NodeMan job (job operate, or plugin operate for MAIN_*_PLUGIN types).",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Job","type":"string","jsonPath":".status.run.jobId"}"#,
    printcolumn = r#"{"name":"OK","type":"integer","jsonPath":".status.run.summary.succeeded"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.run.summary.failed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#
)]
#[x_kube(
    cel,
    validation = Rule::new("!(has(self.bkHostId) && has(self.excludeHosts))").message("bkHostId and excludeHosts cannot both be set (NodeMan rejects it)"),
    validation = Rule::new("has(self.bkHostId) || has(self.excludeHosts)").message("one of bkHostId or excludeHosts is required"),
    validation = Rule::new("(self.jobType.startsWith('MAIN_') && self.jobType.endsWith('_PLUGIN')) == has(self.pluginParams)").message("pluginParams is required for MAIN_*_PLUGIN job types and allowed only for them"),
    validation = Rule::new("!self.jobType.startsWith('MANUAL_INSTALL_')").message("install job types are not accepted by NodeMan's job operate call; install agents and proxies in the NodeMan UI"),
    validation = Rule::new("!(self.jobType in ['DEBUG_PLUGIN', 'STOP_DEBUG_PLUGIN', 'PUSH_CONFIG_PLUGIN', 'REMOVE_CONFIG_PLUGIN', 'PACKING_PLUGIN'])").message("NodeMan's operate calls do not run this job type; use a MAIN_*_PLUGIN job type or the NodeMan UI")
)]
#[serde(rename_all = "camelCase")]
pub struct AgentJobSpec {
    /// Fields shared by every job kind.
    #[serde(flatten)]
    pub common: CommonSpec,

    /// The operation. NodeMan `job_type`. Agent and proxy types go to NodeMan's job operate
    /// call, `MAIN_*_PLUGIN` types (with `pluginParams`) to its plugin operate call. The install
    /// types (`MANUAL_INSTALL_*`) and `DEBUG_PLUGIN`, `STOP_DEBUG_PLUGIN`, `PUSH_CONFIG_PLUGIN`,
    /// `REMOVE_CONFIG_PLUGIN` and `PACKING_PLUGIN` are refused (phase `Failed`, reason
    /// `InvalidSpec`, nothing sent): neither call runs them, and the message says what to use.
    pub job_type: NodemanJobType,

    /// Business ids (a list, as NodeMan takes it). NodeMan `bk_biz_id`; honoured only with
    /// `excludeHosts` (select-all mode). Optional: NodeMan's API document marks it required,
    /// NodeMan itself does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(range(min = 0, max = crate::api::common::MAX_BK_ID)))]
    pub bk_biz_id: Option<Vec<i64>>,

    /// Search conditions for select-all mode, e.g. `{key: inner_ip, value: ["127.0.0.1"]}`.
    /// NodeMan `conditions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<NodemanCondition>>,

    /// The hosts to act on. NodeMan `bk_host_id`. Exactly one of `bkHostId` and `excludeHosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(range(min = 0, max = crate::api::common::MAX_BK_ID)))]
    pub bk_host_id: Option<Vec<i64>>,

    /// Select every host matching `bkBizId`/`conditions` except these. NodeMan `exclude_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(range(min = 0, max = crate::api::common::MAX_BK_ID)))]
    pub exclude_hosts: Option<Vec<i64>>,

    /// Install the latest plugins with the agent (NodeMan default true). NodeMan
    /// `is_install_latest_plugins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_install_latest_plugins: Option<bool>,

    /// The plugin to operate, for `MAIN_*_PLUGIN` job types, which go to NodeMan's plugin operate
    /// call. NodeMan `plugin_params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_params: Option<PluginParams>,
}

/// One NodeMan search condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct NodemanCondition {
    /// Condition key, e.g. `inner_ip`, `os_type`, `status`, `bk_cloud_id`, `query`.
    #[schemars(length(min = 1))]
    pub key: String,
    /// Condition value: a string or a list, as NodeMan takes it.
    #[schemars(schema_with = "super::any_value")]
    pub value: serde_json::Value,
}

/// NodeMan `plugin_params`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginParams {
    /// Plugin name, e.g. `bkmonitorbeat`. NodeMan `plugin_params.name`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Plugin version (latest when absent). NodeMan `plugin_params.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Keep the plugin's config. NodeMan `plugin_params.keep_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_config: Option<bool>,
    /// Do not restart the plugin. NodeMan `plugin_params.no_restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_restart: Option<bool>,
}

macro_rules! job_types {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)*) => {
        /// NodeMan `job_type`: every value in the seed and upstream (`constants.py`).
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
        pub enum NodemanJobType {
            $($(#[$doc])* #[serde(rename = $wire)] $variant,)*
        }

        impl NodemanJobType {
            /// Every job type, in the order the CRD lists them.
            pub const ALL: &'static [NodemanJobType] = &[$(NodemanJobType::$variant,)*];

            /// The wire value.
            pub fn as_str(self) -> &'static str {
                match self { $(NodemanJobType::$variant => $wire,)* }
            }
        }
    };
}

job_types! {
    /// Restart agents.
    RestartAgent = "RESTART_AGENT",
    /// Reinstall agents.
    ReinstallAgent = "REINSTALL_AGENT",
    /// Uninstall agents.
    UninstallAgent = "UNINSTALL_AGENT",
    /// Remove agents from NodeMan.
    RemoveAgent = "REMOVE_AGENT",
    /// Upgrade agents.
    UpgradeAgent = "UPGRADE_AGENT",
    /// Import agent machines.
    ImportAgent = "IMPORT_AGENT",
    /// Reload agent config.
    ReloadAgent = "RELOAD_AGENT",
    /// Activate agents.
    ActivateAgent = "ACTIVATE_AGENT",
    /// Manual agent install (seed only; NodeMan's operate call refuses install types).
    ManualInstallAgent = "MANUAL_INSTALL_AGENT",
    /// Restart proxies.
    RestartProxy = "RESTART_PROXY",
    /// Reinstall proxies.
    ReinstallProxy = "REINSTALL_PROXY",
    /// Uninstall proxies.
    UninstallProxy = "UNINSTALL_PROXY",
    /// Remove proxies.
    RemoveProxy = "REMOVE_PROXY",
    /// Upgrade proxies.
    UpgradeProxy = "UPGRADE_PROXY",
    /// Import proxy machines.
    ImportProxy = "IMPORT_PROXY",
    /// Reload proxy config.
    ReloadProxy = "RELOAD_PROXY",
    /// Activate proxies.
    ActivateProxy = "ACTIVATE_PROXY",
    /// Manual proxy install (seed only; NodeMan's operate call refuses install types).
    ManualInstallProxy = "MANUAL_INSTALL_PROXY",
    /// Start a plugin.
    MainStartPlugin = "MAIN_START_PLUGIN",
    /// Stop a plugin.
    MainStopPlugin = "MAIN_STOP_PLUGIN",
    /// Restart a plugin.
    MainRestartPlugin = "MAIN_RESTART_PLUGIN",
    /// Reload a plugin.
    MainReloadPlugin = "MAIN_RELOAD_PLUGIN",
    /// Put a plugin under management.
    MainDelegatePlugin = "MAIN_DELEGATE_PLUGIN",
    /// Take a plugin out of management.
    MainUndelegatePlugin = "MAIN_UNDELEGATE_PLUGIN",
    /// Install a plugin.
    MainInstallPlugin = "MAIN_INSTALL_PLUGIN",
    /// Stop a plugin and delete its policy.
    MainStopAndDeletePlugin = "MAIN_STOP_AND_DELETE_PLUGIN",
    /// Debug a plugin.
    DebugPlugin = "DEBUG_PLUGIN",
    /// Stop debugging a plugin.
    StopDebugPlugin = "STOP_DEBUG_PLUGIN",
    /// Push plugin config.
    PushConfigPlugin = "PUSH_CONFIG_PLUGIN",
    /// Remove plugin config.
    RemoveConfigPlugin = "REMOVE_CONFIG_PLUGIN",
    /// Pack a plugin.
    PackingPlugin = "PACKING_PLUGIN",
}

/// Why bkops does not submit a job type, and what to use instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why neither NodeMan operate call can run it.
    pub why: &'static str,
    /// What a person should use instead.
    pub instead: &'static str,
}

impl NodemanJobType {
    /// `MAIN_*_PLUGIN` types go to the plugin operate call with `plugin_params`.
    pub fn is_main_plugin(self) -> bool {
        let s = self.as_str();
        s.starts_with("MAIN_") && s.ends_with("_PLUGIN")
    }

    /// Why bkops refuses this job type before any call, or `None` for the types it submits.
    ///
    /// NodeMan lists every one of these as a job type, but runs them only from its own UI or
    /// internal calls: its job operate call refuses installs, and its plugin operate call has
    /// no action for the debug, config and packing types (it fails on `DEBUG_PLUGIN` outright
    /// and builds jobs that fail on every host for the others).
    pub fn refusal(self) -> Option<Refusal> {
        use NodemanJobType::*;
        let refusal = |why, instead| Some(Refusal { why, instead });
        match self {
            ManualInstallAgent | ManualInstallProxy => refusal(
                "install job types are not accepted by NodeMan's job operate call: installing needs each host's login details, which only NodeMan's install call takes",
                "install agents and proxies in the NodeMan UI, then manage them here with the other AGENT and PROXY job types",
            ),
            DebugPlugin | StopDebugPlugin => refusal(
                "NodeMan's operate calls do not run this job type: plugin debugging is a session NodeMan starts and stops through its own debug calls, not a job",
                "debug a plugin from the NodeMan UI (or BlueKing Monitor's plugin debugging); to run a plugin on hosts use MAIN_START_PLUGIN or MAIN_INSTALL_PLUGIN",
            ),
            PushConfigPlugin => refusal(
                "NodeMan's operate calls do not run this job type: NodeMan records it for config pushes made by a plugin's policy, and its plugin operate call has no action for it",
                "to push a plugin's config use MAIN_INSTALL_PLUGIN with pluginParams, or change the plugin's policy in the NodeMan UI",
            ),
            RemoveConfigPlugin => refusal(
                "NodeMan's operate calls do not run this job type: NodeMan records it for config removals made by a plugin's policy, and its plugin operate call has no action for it",
                "to take a plugin off hosts use MAIN_STOP_AND_DELETE_PLUGIN, or change the plugin's policy in the NodeMan UI",
            ),
            PackingPlugin => refusal(
                "NodeMan's operate calls do not run this job type: it packs an uploaded plugin package on the NodeMan server and acts on no host",
                "upload plugin packages in the NodeMan UI (plugin packages), which packs them",
            ),
            _ => None,
        }
    }
}

impl AgentJobSpec {
    /// Every problem with this spec, with its field path.
    pub fn validate(&self) -> FieldErrors {
        let mut errors = FieldErrors::default();
        self.common.validate_into(&mut errors);
        let spec = FieldPath::spec();
        match (&self.bk_host_id, &self.exclude_hosts) {
            (Some(_), Some(_)) => errors.push(
                spec.child("excludeHosts"),
                "bkHostId and excludeHosts cannot both be set (NodeMan rejects it)",
            ),
            (None, None) => {
                errors.push(spec.clone(), "one of bkHostId or excludeHosts is required")
            }
            (Some(hosts), None) if hosts.is_empty() => {
                errors.push(spec.child("bkHostId"), "must list at least one host")
            }
            _ => {}
        }
        for (field, ids) in [
            ("bkHostId", &self.bk_host_id),
            ("excludeHosts", &self.exclude_hosts),
        ] {
            for (i, id) in ids.iter().flatten().enumerate() {
                if *id < 1 {
                    errors.push(
                        spec.child(field).index(i),
                        format!("must be a host id (at least 1), got {id}"),
                    );
                }
            }
        }
        for (i, id) in self.bk_biz_id.iter().flatten().enumerate() {
            if *id < 1 {
                errors.push(
                    spec.child("bkBizId").index(i),
                    format!("must be a business id (at least 1), got {id}"),
                );
            }
        }
        if let Some(r) = self.job_type.refusal() {
            // The type alone decides: no pluginParams makes it runnable.
            errors.push(
                spec.child("jobType"),
                format!(
                    "{} cannot be submitted: {}; {}",
                    self.job_type.as_str(),
                    r.why,
                    r.instead
                ),
            );
        } else {
            self.validate_plugin_params(&mut errors);
        }
        for (i, c) in self.conditions.iter().flatten().enumerate() {
            if c.key.is_empty() {
                errors.push(
                    spec.child("conditions").index(i).child("key"),
                    "must not be empty",
                );
            }
        }
        errors
    }

    fn validate_plugin_params(&self, errors: &mut FieldErrors) {
        let spec = FieldPath::spec();
        match (self.job_type.is_main_plugin(), &self.plugin_params) {
            (true, None) => errors.push(
                spec.child("pluginParams"),
                format!(
                    "is required for {} (plugin jobs go to NodeMan's plugin operate call)",
                    self.job_type.as_str()
                ),
            ),
            (false, Some(_)) => errors.push(
                spec.child("pluginParams"),
                format!(
                    "applies only to MAIN_*_PLUGIN job types, not {}",
                    self.job_type.as_str()
                ),
            ),
            (true, Some(p)) => check_len(
                errors,
                spec.child("pluginParams").child("name"),
                &p.name,
                1,
                128,
            ),
            (false, None) => {}
        }
    }
}
