//! The Helm chart's RBAC rules as data, read straight from the chart's template files, so tests can
//! bind exactly what the chart grants to a ServiceAccount on a real API server and prove the
//! operator needs nothing more.
//!
//! The `rules:` list of each RBAC template is plain YAML (no template logic inside it; the chart
//! wraps whole objects in its namespaced/cluster-wide choice), which is what makes this possible
//! without rendering the chart.
//!
//! ```ignore
//! #[path = "support/chart_rbac.rs"]
//! mod chart_rbac;           // or `pub mod chart_rbac;` in tests/support/mod.rs
//!
//! let role = Role { rules: Some(chart_rbac::operator_rules()), ..Default::default() };
//! let lease_role = Role { rules: Some(chart_rbac::leader_election_rules()), ..Default::default() };
//! ```

// Each test binary compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use k8s_openapi::api::rbac::v1::PolicyRule;

/// The chart template holding the operator's Role/ClusterRole (rules for the watched namespaces).
pub const OPERATOR_RBAC_TEMPLATE: &str = "charts/bkops/templates/rbac.yaml";
/// The chart template holding the leader-election Role (Leases in one namespace).
pub const LEADER_ELECTION_RBAC_TEMPLATE: &str = "charts/bkops/templates/leader-election-rbac.yaml";

/// What the operator may do in every namespace it watches (with `watchNamespaces` unset these
/// rules are cluster-wide): the job kinds, their status and finalizers, connections, Secrets by
/// name, Events. Bind them with a Role in the test namespace, or a ClusterRole.
pub fn operator_rules() -> Vec<PolicyRule> {
    rules_from_template(OPERATOR_RBAC_TEMPLATE)
}

/// What the operator may do in its own namespace for leader election (Leases).
pub fn leader_election_rules() -> Vec<PolicyRule> {
    rules_from_template(LEADER_ELECTION_RBAC_TEMPLATE)
}

/// The rules of the one `rules:` block in a chart template (a path relative to the crate root).
/// Panics, failing the test, when the file is missing or its rules are not plain YAML.
pub fn rules_from_template(relative: &str) -> Vec<PolicyRule> {
    let path = crate_root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_rules_block(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Finds the single top-level `rules:` key of a template and decodes the list under it.
pub fn parse_rules_block(template: &str) -> Result<Vec<PolicyRule>, String> {
    let block = extract_rules_block(template)?;
    #[derive(serde::Deserialize)]
    struct Rules {
        rules: Vec<PolicyRule>,
    }
    let parsed: Rules = serde_yaml::from_str(&block)
        .map_err(|e| format!("the rules: block is not a list of PolicyRules: {e}\n{block}"))?;
    if parsed.rules.is_empty() {
        return Err("the rules: block is empty".to_owned());
    }
    if let Some(rule) = parsed.rules.iter().find(|r| r.verbs.is_empty()) {
        return Err(format!("a rule without verbs: {rule:?}"));
    }
    Ok(parsed.rules)
}

/// The text of the single top-level `rules:` block, from `rules:` to the next line that is not
/// part of it (another key, `---`, or a template directive at column 0).
pub fn extract_rules_block(template: &str) -> Result<String, String> {
    let lines: Vec<&str> = template.lines().collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_end() == "rules:")
        .map(|(i, _)| i)
        .collect();
    let start = match starts.as_slice() {
        [one] => *one,
        [] => return Err("no top-level `rules:` line".to_owned()),
        many => {
            return Err(format!(
                "{} top-level `rules:` lines (at {:?}); keep one rules list per RBAC template",
                many.len(),
                many.iter().map(|i| i + 1).collect::<Vec<_>>()
            ));
        }
    };
    let mut block = String::from("rules:\n");
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let belongs = line.trim().is_empty()
            || line.starts_with(' ')
            || line.starts_with("- ")
            || line.starts_with('#');
        if !belongs {
            // A directive at column 0 followed by more of the list is logic inside the rules.
            let continues = lines[i..]
                .iter()
                .find(|l| !l.trim_start().starts_with("{{"))
                .is_some_and(|l| l.starts_with(' ') || l.starts_with("- "));
            if line.trim_start().starts_with("{{") && continues {
                return Err(format!(
                    "line {}: template logic inside the rules: list ({line:?}); keep it plain YAML",
                    i + 1
                ));
            }
            break;
        }
        if line.contains("{{") || line.contains("}}") {
            return Err(format!(
                "line {}: template logic inside the rules: list ({line:?}); keep it plain YAML",
                i + 1
            ));
        }
        block.push_str(line);
        block.push('\n');
    }
    Ok(block)
}

fn crate_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}
