//! The Prometheus side of the operator, checked with Prometheus's own tools: the alert rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`), the chart's PrometheusRule
//! carries the same file, every metric the rules and the Grafana dashboard query is one the
//! operator exports, and a real `prometheus` server scrapes the operator (it serves OpenMetrics)
//! and loads the rules.
//!
//! `promtool` and `prometheus` must be on PATH: `hack/provision-prometheus.sh` installs them
//! (`hack/test.sh` runs it).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bkops::api::ProcessJob;
use bkops::api::common::Phase;
use serde_json::Value;
use support::env::{Env, EnvOptions};

const RULES: &str = "deploy/prometheus/bkops-rules.yaml";
const RULE_TESTS: &str = "deploy/prometheus/bkops-rules.test.yaml";
const CHART_RULES: &str = "charts/bkops/files/bkops-rules.yaml";
const CHART_RULE_TEMPLATE: &str = "charts/bkops/templates/prometheusrule.yaml";
const DASHBOARD: &str = "deploy/grafana/bkops-dashboard.json";

/// How long the end-to-end test waits for Prometheus to see something.
const WAIT: Duration = Duration::from_secs(40);

fn path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn yaml(relative: &str) -> Value {
    let v: serde_yaml::Value =
        serde_yaml::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
    serde_json::to_value(v).expect("YAML maps to JSON")
}

/// A Prometheus binary on PATH, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not on PATH: run hack/provision-prometheus.sh"))
}

/// Runs `promtool` with `args` in the repository root; its output, or a failure with it.
fn promtool(args: &[&str]) -> String {
    let out = Command::new(tool("promtool"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The alerting rules of the rules file: (alert name, expression).
fn rules() -> Vec<(String, String)> {
    let file = yaml(RULES);
    let groups = file["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            (
                r["alert"].as_str().expect("only alerting rules").to_owned(),
                r["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect()
}

fn alert_names() -> BTreeSet<String> {
    rules().into_iter().map(|(name, _)| name).collect()
}

/// Every PromQL expression of the dashboard: the panels' `expr` and the variables' queries.
fn dashboard_queries() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (key, sub) in map {
                    match (key.as_str(), sub) {
                        ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                        _ => walk(sub, out),
                    }
                }
            }
            Value::Array(list) => list.iter().for_each(|sub| walk(sub, out)),
            _ => {}
        }
    }
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    walk(&dashboard["templating"], &mut out);
    out
}

/// The operator's metric names an expression uses (every one starts with `bkops_`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.match_indices("bkops_")
        .filter(|(at, _)| {
            !expr[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        })
        .map(|(at, _)| {
            expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect()
        })
        .collect()
}

/// The sample names of an exposition (`name{labels} value` or `name value`).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_rules_pass_promtool_check() {
    let out = promtool(&["check", "rules", RULES]);
    let want = format!("SUCCESS: {} rules found", rules().len());
    assert!(out.contains(&want), "want {want:?} in:\n{out}");
}

#[test]
fn the_rules_pass_their_unit_tests() {
    let out = promtool(&["test", "rules", RULE_TESTS]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Each alert has a unit test where it fires and one where it does not.
#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let tests = yaml(RULE_TESTS);
    assert_eq!(tests["rule_files"], serde_json::json!(["bkops-rules.yaml"]));
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in tests["tests"].as_array().expect("tests").iter() {
        for check in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = check["alertname"].as_str().expect("alertname").to_owned();
            let expected = check["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                &mut firing
            } else {
                &mut quiet
            }
            .insert(name);
        }
    }
    let alerts = alert_names();
    assert!(alerts.len() >= 10, "only {alerts:?}");
    let never_fires: Vec<_> = alerts.difference(&firing).collect();
    let never_quiet: Vec<_> = alerts.difference(&quiet).collect();
    let unknown: Vec<_> = firing
        .union(&quiet)
        .filter(|a| !alerts.contains(*a))
        .collect();
    assert!(
        never_fires.is_empty() && never_quiet.is_empty() && unknown.is_empty(),
        "{RULE_TESTS}: no firing case for {never_fires:?}, no quiet case for {never_quiet:?}, \
         cases for alerts that do not exist: {unknown:?}"
    );
}

/// The chart's PrometheusRule is the rules file as is: the plain file is the chart's, and the
/// template puts it under `spec` (checked here by doing what Helm does with that one line).
#[test]
fn the_chart_ships_the_same_rules() {
    assert_eq!(
        read(RULES),
        read(CHART_RULES),
        "{RULES} must be the chart's {CHART_RULES} (a symlink to it)"
    );
    let template = read(CHART_RULE_TEMPLATE);
    assert!(template.starts_with("{{- if .Values.metrics.prometheusRule.enabled }}\n"));
    let include = "\nspec:\n  {{- .Files.Get \"files/bkops-rules.yaml\" | nindent 2 }}\n";
    let (_, after) = template
        .split_once(include)
        .unwrap_or_else(|| panic!("{CHART_RULE_TEMPLATE} lacks {include:?}"));
    assert_eq!(after, "{{- end }}\n", "nothing after the rules");
    // `{{-` eats the newline and indent before it; `nindent 2` puts them back on every line.
    let rendered = format!(
        "spec:{}",
        format!("\n{}", read(CHART_RULES)).replace('\n', "\n  ")
    );
    let rendered: serde_yaml::Value = serde_yaml::from_str(&rendered).expect("rendered spec");
    assert_eq!(
        serde_json::to_value(&rendered["spec"]).expect("JSON"),
        yaml(CHART_RULES)
    );
    assert_eq!(
        yaml("charts/bkops/values.yaml")["metrics"]["prometheusRule"]["enabled"],
        false
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The operator in-process with `/metrics` on a free port, in a namespace of its own.
async fn operator_with_metrics(prefix: &str) -> (Env, String) {
    let mut env = Env::with(
        prefix,
        EnvOptions {
            operator: false,
            ..EnvOptions::default()
        },
    )
    .await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut config = env.operator_config();
    config.metrics_addr = Some(addr.parse().expect("address"));
    env.start_operator_with(env.ns.client(), config).await;
    (env, addr)
}

/// Runs one ProcessJob to Succeeded.
async fn run_a_job(env: &Env) {
    env.apply(
        "apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {name: scraped}\n\
         spec:\n  bkBizId: 2\n  jobObject: process\n  jobAction: restart\n  scope: {bkSetEnv: \"3\"}\n",
    )
    .await;
    env.wait_phase::<ProcessJob>("scraped", Phase::Succeeded)
        .await;
}

async fn get_text(url: &str) -> String {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.text().await.expect("body")
}

/// Every `bkops_` metric the rules and the dashboard query is exported after a job's lifecycle:
/// a renamed metric, a counter without `_total` or a histogram without `_bucket` fails here.
#[tokio::test]
async fn the_rules_and_the_dashboard_query_only_exported_metrics() {
    let (env, addr) = operator_with_metrics("prom-names").await;
    run_a_job(&env).await;
    let exported = exported_names(&get_text(&format!("http://{addr}/metrics")).await);
    let mut used: Vec<(String, String)> = Vec::new();
    for (alert, expr) in rules() {
        used.extend(metric_names(&expr).into_iter().map(|m| (m, alert.clone())));
    }
    for query in dashboard_queries() {
        used.extend(
            metric_names(&query)
                .into_iter()
                .map(|m| (m, format!("dashboard: {query}"))),
        );
    }
    let names: BTreeSet<&str> = used.iter().map(|(m, _)| m.as_str()).collect();
    // The rules and the dashboard between them cover the operator's metrics.
    for family in [
        "bkops_runs",
        "bkops_phase_transitions_total",
        "bkops_submissions_total",
        "bkops_bk_calls_total",
        "bkops_bk_call_duration_seconds_bucket",
        "bkops_bk_call_wait_seconds_bucket",
        "bkops_reconciles_total",
        "bkops_reconcile_slot_wait_seconds_bucket",
        "bkops_leader",
    ] {
        assert!(names.contains(family), "nothing queries {family}");
    }
    let missing: Vec<&(String, String)> =
        used.iter().filter(|(m, _)| !exported.contains(m)).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported (metric, where): {missing:#?}\nexported: {exported:?}"
    );
    env.stop().await;
}

/// A `prometheus` server on a free local port with its storage in a temporary folder; killed
/// when dropped, also when the test fails.
struct Prometheus {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates `rule_file` every second.
    fn start(target: &str, rule_file: &Path) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [{rules}]\n\
                 scrape_configs:\n  - job_name: bkops\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules = serde_json::to_string(&rule_file.display().to_string()).expect("path")
            ),
        )
        .expect("config written");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            base: format!("http://{addr}"),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Waits until the server answers `/-/ready`.
    async fn ready(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            let ready = reqwest::get(format!("{}/-/ready", self.base)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus not ready in {WAIT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET /api/v1/<path>`; the `data` of a successful answer.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let body: Value = serde_json::from_str(&response.text().await.expect("body"))
            .unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// Polls `check` over `data` of `path` until it says nothing is wrong (`None`), or fails
    /// with its last complaint.
    async fn wait_for(
        &self,
        path: &str,
        query: &[(&str, &str)],
        check: impl Fn(&Value) -> Option<String>,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let data = self.api(path, query).await;
            match check(&data) {
                None => return data,
                Some(why) if tokio::time::Instant::now() > deadline => {
                    panic!(
                        "{path} {query:?} after {WAIT:?}: {why}\n{data:#}\n{}",
                        self.log()
                    )
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus scrapes the operator (negotiating OpenMetrics), stores `bkops_runs` with the
/// right labels, loads the rules file with every rule healthy and none pending or firing, and
/// accepts every query of the dashboard.
#[tokio::test]
async fn a_real_prometheus_scrapes_the_operator_and_loads_the_rules() {
    let (env, addr) = operator_with_metrics("prom-scrape").await;
    let mut prometheus = Prometheus::start(&addr, &path(RULES));
    prometheus.ready().await;
    run_a_job(&env).await;

    prometheus
        .wait_for("targets", &[], |data| {
            match data["activeTargets"].as_array().map(Vec::as_slice) {
                Some([t]) if t["health"] == "up" && t["lastError"] == "" => None,
                _ => Some("want one target, up, without an error".to_owned()),
            }
        })
        .await;
    let runs = prometheus
        .wait_for(
            "query",
            &[("query", r#"bkops_runs{phase="Succeeded"}"#)],
            |data| match data["result"].as_array().map(Vec::as_slice) {
                Some([sample]) if sample["value"][1] == "1" => None,
                _ => Some("want one sample of value 1".to_owned()),
            },
        )
        .await;
    let labels = &runs["result"][0]["metric"];
    assert_eq!(labels["kind"], "ProcessJob", "{runs}");
    assert_eq!(labels["job"], "bkops", "{runs}");
    assert_eq!(labels["instance"], addr.as_str(), "{runs}");

    let alerts = alert_names();
    prometheus
        .wait_for("rules", &[], |data| {
            let rules: Vec<&Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            let names: BTreeSet<String> = rules
                .iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect();
            if names != alerts {
                return Some(format!("loaded {names:?}, want {alerts:?}"));
            }
            // Before its first evaluation a rule's health is "unknown"; BkopsDown is pending
            // until the first scrape.
            let wrong: Vec<String> = rules
                .iter()
                .filter(|r| r["health"] != "ok" || r["state"] != "inactive")
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r["name"], r["health"], r["state"], r["lastError"]
                    )
                })
                .collect();
            (!wrong.is_empty()).then(|| format!("not healthy and inactive: {wrong:?}"))
        })
        .await;

    // Grafana fills in its variables; Prometheus must accept the rest.
    for query in dashboard_queries() {
        let promql = query
            .replace("$__rate_interval", "1m")
            .replace("$kind", ".*");
        if let Some(series) = promql.strip_prefix("label_values(") {
            let (metric, _) = series.split_once(',').expect("label_values(metric, label)");
            prometheus.api("series", &[("match[]", metric)]).await;
            continue;
        }
        assert!(
            !promql.contains('$'),
            "a variable this test does not fill in: {query}"
        );
        prometheus.api("query", &[("query", &promql)]).await;
    }
    drop(prometheus);
    env.stop().await;
}
