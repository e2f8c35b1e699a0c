//! The kinds' mappings: spec to create call, job id to reference, spec to search filters.

use super::*;

fn load<K: DeserializeOwned>(file: &str) -> K {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn wire(req: &CreateRequest) -> Value {
    match req {
        CreateRequest::Gsekit(b) => serde_json::to_value(b),
        CreateRequest::BkflowTemplate { body, .. } => serde_json::to_value(body),
        CreateRequest::BkflowTree { body, .. } => serde_json::to_value(body),
        CreateRequest::NodemanJob(b) => serde_json::to_value(b),
        CreateRequest::NodemanPlugin(b) => serde_json::to_value(b),
        CreateRequest::JobV2(b) => serde_json::to_value(b),
        CreateRequest::JobV3(b) => serde_json::to_value(b),
    }
    .unwrap()
}

#[test]
fn process_job_maps_to_the_seed_body_plus_the_run_key() {
    let pj: ProcessJob = load("processjob-generate-config.yaml");
    let body = wire(
        &pj.create_request("abc-g1-a1", &Defaults::default())
            .unwrap(),
    );
    assert_eq!(body["bk_biz_id"], 2);
    assert_eq!(body["job_object"], "configfile");
    assert_eq!(body["job_action"], "generate");
    assert_eq!(body["scope"]["bk_set_env"], "3");
    assert_eq!(body["expression_scope"]["bk_process_id"], "4[6, 8, 9]");
    assert_eq!(body["extra_data"][GSEKIT_KEY_FIELD], "abc-g1-a1");
}

#[test]
fn taskflow_carries_the_key_in_name_and_keeps_the_tree() {
    let tf: Taskflow = load("taskflow-pipeline-tree.yaml");
    let req = tf.create_request("k-g1-a1", &Defaults::default()).unwrap();
    let CreateRequest::BkflowTree { space_id, .. } = &req else {
        panic!("{req:?}")
    };
    assert_eq!(*space_id, 1);
    let body = wire(&req);
    assert_eq!(body["name"], "display-message [bkops:k-g1-a1]");
    assert_eq!(
        body["pipeline_tree"],
        tf.spec.pipeline_tree.clone().unwrap()
    );
    assert!(tf.two_phase());
    let mut no_space = tf.clone();
    no_space.spec.space_id = None;
    assert!(no_space.create_request("k", &Defaults::default()).is_err());
    let d = Defaults {
        bkflow_space_id: Some(7),
        username: None,
    };
    assert_eq!(
        no_space.job_ref("93", &d).unwrap(),
        JobRef::Bkflow {
            space_id: 7,
            task_id: 93
        }
    );
}

#[test]
fn the_longest_run_key_is_the_bound_limits_gives() {
    let key = crate::run::run_key("0123abcd-ffff", i64::MAX, u32::MAX);
    assert_eq!(
        key.chars().count(),
        crate::limits::RUN_KEY_MAX_CHARS,
        "{key}"
    );
}

#[test]
fn task_names_fit_bkflow_and_keep_the_key_whole() {
    let key = "1f3a9c2e-g3-a1";
    let suffix = format!(" [bkops:{key}]");
    let room = BKFLOW_TASK_NAME_MAX_CHARS - suffix.chars().count();
    // Up to the limit: kept whole.
    let at_limit = "n".repeat(room);
    let name = task_name(&at_limit, key);
    assert_eq!(name, format!("{at_limit}{suffix}"));
    assert_eq!(name.chars().count(), BKFLOW_TASK_NAME_MAX_CHARS);
    // One past it, and as long as an object name may be: cut, marked, key intact.
    for len in [room + 1, 253] {
        let name = task_name(&"n".repeat(len), key);
        assert_eq!(name.chars().count(), BKFLOW_TASK_NAME_MAX_CHARS, "{len}");
        assert!(name.ends_with(&format!("…{suffix}")), "{name}");
        assert!(name.contains(key));
    }
    // Characters, not bytes, as BKFlow counts them.
    let wide = task_name(&"任".repeat(200), key);
    assert_eq!(wide.chars().count(), BKFLOW_TASK_NAME_MAX_CHARS);
    assert!(wide.starts_with("任任") && wide.ends_with(&suffix));
    // A cut never leaves a space before the mark.
    let spaced = task_name(&format!("{} {}", "a".repeat(room - 2), "b".repeat(50)), key);
    assert!(spaced.contains("a…"), "{spaced}");
    // The longest key still leaves room for a name.
    let long_key = "k".repeat(crate::limits::RUN_KEY_MAX_CHARS);
    let name = task_name(&"x".repeat(253), &long_key);
    assert_eq!(name.chars().count(), BKFLOW_TASK_NAME_MAX_CHARS);
    assert!(name.starts_with("xxxx") && name.ends_with(&format!("[bkops:{long_key}]")));
}

#[test]
fn a_long_object_name_is_cut_and_the_description_is_the_users_own() {
    let mut tf: Taskflow = load("taskflow-template.yaml");
    tf.metadata.name = Some("t".repeat(253));
    tf.spec.name = None;
    tf.spec.description = Some("nightly restart".to_owned());
    let body = wire(&tf.create_request("k-g1-a1", &Defaults::default()).unwrap());
    let name = body["name"].as_str().unwrap();
    assert_eq!(name.chars().count(), BKFLOW_TASK_NAME_MAX_CHARS);
    assert!(name.ends_with("… [bkops:k-g1-a1]"), "{name}");
    assert_eq!(body["description"], "nightly restart");
    tf.spec.description = Some(String::new());
    let body = wire(&tf.create_request("k-g1-a1", &Defaults::default()).unwrap());
    assert!(body.get("description").is_none(), "{body}");
}

#[test]
fn agent_jobs_route_plugins_to_plugin_operate() {
    let aj: AgentJob = load("agentjob-restart-agents.yaml");
    let body = wire(&aj.create_request("k", &Defaults::default()).unwrap());
    assert_eq!(body["job_type"], "RESTART_AGENT");
    assert_eq!(body["exclude_hosts"], serde_json::json!([1, 2, 3]));
    assert_eq!(
        body["conditions"][0]["value"],
        serde_json::json!(["127.0.0.1"])
    );
    let plugin: AgentJob = load("agentjob-restart-plugin.yaml");
    let req = plugin.create_request("k", &Defaults::default()).unwrap();
    assert!(matches!(req, CreateRequest::NodemanPlugin(_)), "{req:?}");
    assert_eq!(wire(&req)["plugin_params"]["keep_config"], true);
}

#[test]
fn execute_jobs_map_both_apis() {
    let v2: ExecuteJob = load("executejob-v2.yaml");
    let body = wire(&v2.create_request("k", &Defaults::default()).unwrap());
    assert_eq!(body["bk_job_id"], 100);
    assert_eq!(body["steps"][0]["script_timeout"], 1000);
    assert_eq!(
        body["steps"][2]["file_source"][0]["files"][0],
        "/tmp/REGEX:[a-z]*.txt"
    );
    assert_eq!(
        body["global_vars"][0]["custom_query_id"],
        serde_json::json!(["3", "5", "7"])
    );
    assert!(!v2.two_phase());
    let v3: ExecuteJob = load("executejob-v3.yaml");
    let body = wire(&v3.create_request("k", &Defaults::default()).unwrap());
    assert_eq!(body["start_task"], false);
    assert_eq!(body["bk_scope_id"], "2");
    assert_eq!(
        body["global_var_list"][1]["server"]["ip_list"][0]["bk_cloud_id"],
        0
    );
    assert!(v3.two_phase());
}
