//! The BlueKing simulator over real HTTP: every seed example at its documented path and at the
//! upstream gateway path, auth, envelopes, faults, quirks and call counts.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bkops::sim::{
    AppCredential, Behaviour, FaultAction, FaultRule, SimConfig, SimHandle, System, SystemSel,
    start,
};
use reqwest::{Client, Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

const SHORT_MS: u64 = 300;

fn seed(name: &str) -> String {
    let path = format!("{}/src/sim/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = SimConfig {
        job_duration: Duration::from_millis(SHORT_MS),
        ..SimConfig::default()
    };
    // The seed examples carry placeholder credentials; accept them so they work verbatim.
    config.apps.extend([
        AppCredential::new("xxxx", "xxx"),
        AppCredential::new("xxxx", "xxxx"),
        AppCredential::new("esb_test", "xxx"),
    ]);
    f(&mut config);
    start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn sim() -> SimHandle {
    sim_with(|_| {}).await
}

fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder().no_proxy().build().unwrap()
}

fn auth() -> String {
    json!({"bk_app_code": "bkops", "bk_app_secret": "bkops-secret", "bk_username": "admin"})
        .to_string()
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

async fn call(method: Method, url: &str, body: Option<String>, header: bool) -> Resp {
    let mut req = client().request(method, url);
    if header {
        req = req.header("X-Bkapi-Authorization", auth());
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(
        headers.contains_key("x-bkapi-request-id"),
        "no request id on {url}"
    );
    Resp {
        status,
        headers,
        body,
        text,
    }
}

async fn post(url: &str, body: Value, header: bool) -> Resp {
    call(Method::POST, url, Some(body.to_string()), header).await
}

async fn get(url: &str, header: bool) -> Resp {
    call(Method::GET, url, None, header).await
}

fn gw(sim: &SimHandle, api: &str, path: &str) -> String {
    format!("{}{path}", sim.gateway_url(api))
}

fn esb(sim: &SimHandle, path: &str) -> String {
    format!("{}{path}", sim.esb_url())
}

/// Polls until `done` holds for the answer, or fails after a few seconds.
async fn poll<F, Fut>(mut f: F, done: impl Fn(&Value) -> bool) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = f().await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out; last answer {v}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

fn esb_creds() -> serde_json::Map<String, Value> {
    json!({"bk_app_code": "bkops", "bk_app_secret": "bkops-secret", "bk_username": "admin"})
        .as_object()
        .cloned()
        .unwrap()
}

fn with_creds(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.extend(esb_creds());
    }
    v
}

#[tokio::test]
async fn gsekit_seed_via_esb_and_gateway() {
    let sim = sim().await;
    // ESB, credentials in the body, the seed verbatim (trailing commas and all).
    let r = call(
        Method::POST,
        &esb(&sim, "gsekit/api/job/create_job/"),
        Some(seed("gsekit_create_job.json")),
        false,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["result"], true);
    assert_eq!(r.body["code"], 0);
    assert!(r.body["request_id"].is_string());
    let id = r.body["data"]["job_id"].as_u64().unwrap();
    let v = poll(
        || async {
            post(
                &esb(&sim, "gsekit/api/job/job_status/"),
                with_creds(json!({"bk_biz_id": 2, "job_id": id})),
                false,
            )
            .await
            .body
        },
        |v| v["data"]["job_info"]["status"] == "succeeded",
    )
    .await;
    assert_eq!(v["data"]["status_counter"]["succeeded"], 3);
    assert_eq!(
        v["data"]["job_tasks"],
        json!([]),
        "empty id list selects none"
    );

    // Gateway: bk_biz_id in the path, credentials in the header. A long run, so that the
    // pending phase is observable on a slow machine; `finish` then ends it.
    sim.control()
        .set_behaviour(&Behaviour {
            system: System::Gsekit,
            failed_targets: None,
            wait_for_user: false,
            duration_ms: Some(60_000),
            targets: None,
            times: Some(1),
        })
        .await
        .unwrap();
    let r = call(
        Method::POST,
        &gw(&sim, "bk-gsekit", "api/2/job/"),
        Some(seed("gsekit_create_job.json")),
        true,
    )
    .await;
    let id = r.body["data"]["job_id"].as_u64().unwrap();
    let status_url = gw(&sim, "bk-gsekit", &format!("api/2/job/{id}/job_status/"));
    let first = post(&status_url, json!({}), true).await.body;
    assert_eq!(first["data"]["job_info"]["status"], "pending");
    assert_eq!(first["data"]["job_info"]["is_ready"], false);
    sim.control().finish(System::Gsekit, id).await.unwrap();
    poll(
        || async { post(&status_url, json!({}), true).await.body },
        |v| v["data"]["job_info"]["status"] == "succeeded",
    )
    .await;
    let tasks = post(
        &gw(&sim, "bk-gsekit", &format!("api/2/job/{id}/job_task/")),
        json!({"page": 1, "pagesize": 2}),
        true,
    )
    .await
    .body;
    assert_eq!(tasks["data"]["count"], 3);
    assert_eq!(tasks["data"]["list"].as_array().unwrap().len(), 2);
    let list = get(
        &gw(
            &sim,
            "bk-gsekit",
            "api/2/job/?created_by=admin&job_action=generate",
        ),
        true,
    )
    .await
    .body;
    assert_eq!(list["data"]["count"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn gsekit_failures_and_validation() {
    let sim = sim().await;
    sim.control()
        .set_behaviour(&Behaviour {
            system: System::Gsekit,
            failed_targets: Some(1),
            wait_for_user: false,
            duration_ms: None,
            targets: None,
            times: Some(1),
        })
        .await
        .unwrap();
    let body =
        json!({"job_object": "process", "job_action": "restart", "scope": {"bk_set_env": "3"}});
    let id = post(&gw(&sim, "bk-gsekit", "api/5/job/"), body.clone(), true)
        .await
        .body["data"]["job_id"]
        .as_u64()
        .unwrap();
    let url = gw(&sim, "bk-gsekit", &format!("api/5/job/{id}/job_task/"));
    let v = poll(
        || async {
            post(
                &url,
                json!({"page": 1, "pagesize": 10, "statuses": ["failed"]}),
                true,
            )
            .await
            .body
        },
        |v| {
            v["data"]["status_counter"]["failed"] == 1
                && v["data"]["status_counter"]["running"] == 0
        },
    )
    .await;
    let failed = &v["data"]["list"][0];
    assert_eq!(failed["status"], "failed");
    assert!(
        !failed["extra_data"]["failed_reason"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let st = post(
        &gw(&sim, "bk-gsekit", &format!("api/5/job/{id}/job_status/")),
        json!({}),
        true,
    )
    .await;
    assert_eq!(st.body["data"]["job_info"]["status"], "failed");

    // Validation: string code with `errors`; enum checked.
    let r = post(
        &gw(&sim, "bk-gsekit", "api/5/job/"),
        json!({"job_object": "process", "job_action": "explode", "scope": {}}),
        true,
    )
    .await;
    assert_eq!(r.body["result"], false);
    assert_eq!(r.body["code"], "4100001");
    assert!(r.body.as_object().unwrap().contains_key("errors"));
    // Neither scope nor expression_scope: upstream crashes with a bare 500.
    let r = post(
        &gw(&sim, "bk-gsekit", "api/5/job/"),
        json!({"job_object": "process", "job_action": "start"}),
        true,
    )
    .await;
    assert_eq!(r.status, 500);
    // Unknown job: string code.
    let r = post(
        &gw(&sim, "bk-gsekit", "api/5/job/999/job_status/"),
        json!({}),
        true,
    )
    .await;
    assert_eq!(r.body["code"], "4102005");
    // There is no cancel.
    let r = post(
        &gw(&sim, "bk-gsekit", &format!("api/5/job/{id}/revoke/")),
        json!({}),
        true,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["code"], 1640401);
    sim.shutdown().await;
}

#[tokio::test]
async fn bkflow_seed_requests_start_once_and_finish() {
    let sim = sim().await;
    for api in ["bk-flow", "bk-flow-engine"] {
        // Seed 001: credentials in the body (its odd "bk_username or bk_token" key ignored).
        let r = call(
            Method::POST,
            &gw(&sim, api, "space/1/create_task_without_template/"),
            Some(seed("bkflow_create_task_without_template.json")),
            false,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["code"], "0");
        assert!(r.body["trace_id"].is_string());
        assert_eq!(r.body["data"]["is_started"], false);
        let id = r.body["data"]["id"].as_u64().unwrap();
        let states = gw(&sim, api, &format!("space/1/task/{id}/get_task_states/"));
        assert_eq!(get(&states, true).await.body["data"]["state"], "CREATED");
        let start = gw(&sim, api, &format!("space/1/task/{id}/operate_task/start/"));
        let r = post(&start, json!({"operator": "admin"}), true).await;
        assert_eq!(r.body["result"], true);
        assert!(r.body.get("code").is_none(), "operate_task has no code");
        let again = post(&start, json!({"operator": "admin"}), true).await;
        assert_eq!(again.body["result"], false);
        assert_eq!(again.body["message"], "task already started");
        let v = poll(
            || async { get(&states, true).await.body },
            |v| v["data"]["state"] == "FINISHED",
        )
        .await;
        assert!(
            v["data"]["children"]
                .get("nf834705dbbb37c59ad114aa37314975")
                .is_some(),
            "the seed's node is in the tree"
        );
    }
    // Seed 004: no credentials in the body, so the header carries them.
    let r = call(
        Method::POST,
        &gw(&sim, "bk-flow", "space/1/create_task/"),
        Some(seed("bkflow_create_task.json")),
        true,
    )
    .await;
    assert_eq!(r.body["data"]["template_id"], 4);
    let id = r.body["data"]["id"].as_u64().unwrap();
    post(
        &gw(
            &sim,
            "bk-flow",
            &format!("space/1/task/{id}/operate_task/start/"),
        ),
        json!({"operator": "admin"}),
        true,
    )
    .await;
    poll(
        || async {
            post(
                &gw(&sim, "bk-flow", "space/1/get_tasks_states/"),
                json!({"task_ids": [id]}),
                true,
            )
            .await
            .body
        },
        |v| v["data"][id.to_string()]["state"] == "FINISHED",
    )
    .await;
    let detail = get(
        &gw(
            &sim,
            "bk-flow",
            &format!("space/1/task/{id}/get_task_detail/"),
        ),
        true,
    )
    .await;
    assert_eq!(detail.body["data"]["is_finished"], true);
    let list = get(
        &gw(
            &sim,
            "bk-flow",
            "space/1/get_task_list/?name=%E7%A9%BA%E9%97%B4&template_id=4",
        ),
        true,
    )
    .await;
    assert_eq!(list.body["data"]["count"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn bkflow_failure_waiting_revoke_and_space() {
    let sim = sim_with(|c| c.bkflow_spaces = vec![1]).await;
    let ctl = sim.control();
    let create = |sim: &SimHandle| {
        let url = gw(sim, "bk-flow", "space/1/create_task/");
        async move {
            post(
                &url,
                json!({"template_id": 1, "creator": "admin", "name": "t"}),
                true,
            )
            .await
            .body["data"]["id"]
                .as_u64()
                .unwrap()
        }
    };
    let start = |sim: &SimHandle, id: u64| {
        let url = gw(
            sim,
            "bk-flow",
            &format!("space/1/task/{id}/operate_task/start/"),
        );
        async move { post(&url, json!({"operator": "admin"}), true).await }
    };
    let state_url = |sim: &SimHandle, id: u64| {
        gw(
            sim,
            "bk-flow",
            &format!("space/1/task/{id}/get_task_states/"),
        )
    };

    // A failing node: FAILED, and the node detail says why.
    let mut b = Behaviour {
        system: System::Bkflow,
        failed_targets: Some(1),
        wait_for_user: false,
        duration_ms: None,
        targets: None,
        times: Some(1),
    };
    ctl.set_behaviour(&b).await.unwrap();
    let id = create(&sim).await;
    start(&sim, id).await;
    let url = state_url(&sim, id);
    let v = poll(
        || async { get(&url, true).await.body },
        |v| v["data"]["state"] == "FAILED",
    )
    .await;
    let (node, _) = v["data"]["children"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, n)| n["state"] == "FAILED")
        .unwrap();
    let d = get(
        &gw(
            &sim,
            "bk-flow",
            &format!("space/1/task/{id}/node/{node}/get_task_node_detail/"),
        ),
        true,
    )
    .await;
    assert!(!d.body["data"]["ex_data"].as_str().unwrap().is_empty());

    // Waiting for a person: NODE_SUSPENDED until approved.
    b.failed_targets = None;
    b.wait_for_user = true;
    ctl.set_behaviour(&b).await.unwrap();
    let id = create(&sim).await;
    start(&sim, id).await;
    let url = state_url(&sim, id);
    poll(
        || async { get(&url, true).await.body },
        |v| v["data"]["state"] == "NODE_SUSPENDED",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(SHORT_MS)).await;
    assert_eq!(
        get(&url, true).await.body["data"]["state"],
        "NODE_SUSPENDED"
    );
    ctl.approve(System::Bkflow, id).await.unwrap();
    poll(
        || async { get(&url, true).await.body },
        |v| v["data"]["state"] == "FINISHED",
    )
    .await;

    // Revoke.
    b.wait_for_user = false;
    b.duration_ms = Some(10_000);
    ctl.set_behaviour(&b).await.unwrap();
    let id = create(&sim).await;
    start(&sim, id).await;
    let r = post(
        &gw(
            &sim,
            "bk-flow",
            &format!("space/1/task/{id}/operate_task/revoke/"),
        ),
        json!({"operator": "admin"}),
        true,
    )
    .await;
    assert_eq!(r.body["result"], true);
    assert_eq!(
        get(&state_url(&sim, id), true).await.body["data"]["state"],
        "REVOKED"
    );

    // Validation: int 400; foreign space: 403 without code; no ESB.
    let r = post(
        &gw(&sim, "bk-flow", "space/1/create_task/"),
        json!({"template_id": 1}),
        true,
    )
    .await;
    assert_eq!(r.body["code"], 400);
    assert_eq!(r.body["result"], false);
    let r = post(
        &gw(&sim, "bk-flow", "space/2/create_task/"),
        json!({"template_id": 1, "creator": "a"}),
        true,
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.body.get("code").is_none());
    let r = post(
        &esb(&sim, "bkflow/create_task/"),
        with_creds(json!({})),
        false,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["code"], 1306404);
    sim.shutdown().await;
}

#[tokio::test]
async fn nodeman_seed_and_terminated_quirk() {
    let sim = sim().await;
    let r = call(
        Method::POST,
        &esb(&sim, "nodeman/api/job/operate/"),
        Some(seed("nodeman_job_operate.json")),
        false,
    )
    .await;
    assert_eq!(r.body["result"], true, "{}", r.text);
    assert_eq!(r.body["code"], 0);
    let id = r.body["data"]["job_id"].as_u64().unwrap();
    assert!(
        r.body["data"]["job_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/#/task-list/detail/{id}"))
    );
    let v = poll(
        || async {
            post(
                &esb(&sim, "nodeman/api/job/details/"),
                with_creds(json!({"job_id": id})),
                false,
            )
            .await
            .body
        },
        |v| v["data"]["status"] == "SUCCESS",
    )
    .await;
    assert_eq!(v["data"]["statistics"]["success_count"], 3);

    // Gateway, header credentials, the seed body; a long run so PENDING is observable.
    sim.control()
        .set_behaviour(&Behaviour {
            system: System::Nodeman,
            failed_targets: None,
            wait_for_user: false,
            duration_ms: Some(60_000),
            targets: None,
            times: Some(1),
        })
        .await
        .unwrap();
    let r = call(
        Method::POST,
        &gw(&sim, "bk-nodeman", "api/job/operate/"),
        Some(seed("nodeman_job_operate.json")),
        true,
    )
    .await;
    let id = r.body["data"]["job_id"].as_u64().unwrap();
    let details = gw(&sim, "bk-nodeman", &format!("api/job/{id}/details/"));
    let first = post(&details, json!({}), true).await.body;
    assert_eq!(first["data"]["status"], "PENDING");
    assert_eq!(first["data"]["statistics"]["total_count"], 0);
    sim.control().finish(System::Nodeman, id).await.unwrap();
    poll(
        || async { post(&details, json!({}), true).await.body },
        |v| v["data"]["status"] == "SUCCESS",
    )
    .await;

    // Partial failure and the status filter.
    sim.control()
        .set_behaviour(&Behaviour {
            system: System::Nodeman,
            failed_targets: Some(1),
            wait_for_user: false,
            duration_ms: None,
            targets: None,
            times: Some(1),
        })
        .await
        .unwrap();
    let r = post(
        &gw(&sim, "bk-nodeman", "system/api/job/operate/"),
        json!({"job_type": "RELOAD_AGENT", "bk_host_id": [11, 12, 13], "bk_biz_id": [2]}),
        true,
    )
    .await;
    let id = r.body["data"]["job_id"].as_u64().unwrap();
    let details = gw(&sim, "bk-nodeman", &format!("api/job/{id}/details/"));
    poll(
        || async { post(&details, json!({}), true).await.body },
        |v| v["data"]["status"] == "PART_FAILED",
    )
    .await;
    let failed = post(
        &details,
        json!({"conditions": [{"key": "status", "value": ["FAILED"]}], "pagesize": -1}),
        true,
    )
    .await
    .body;
    assert_eq!(failed["data"]["total"], 1);
    assert_eq!(failed["data"]["list"][0]["bk_host_id"], 13);

    // Revoke: TERMINATED once, then recomputed.
    sim.control()
        .set_behaviour(&Behaviour {
            system: System::Nodeman,
            failed_targets: None,
            wait_for_user: false,
            duration_ms: Some(20_000),
            targets: None,
            times: Some(1),
        })
        .await
        .unwrap();
    let r = post(
        &gw(&sim, "bk-nodeman", "api/job/operate/"),
        json!({"job_type": "RESTART_AGENT", "bk_host_id": [1, 2]}),
        true,
    )
    .await;
    let id = r.body["data"]["job_id"].as_u64().unwrap();
    let r = post(
        &gw(&sim, "bk-nodeman", &format!("api/job/{id}/revoke/")),
        json!({}),
        true,
    )
    .await;
    assert_eq!(r.body["result"], true);
    let details = gw(&sim, "bk-nodeman", &format!("api/job/{id}/details/"));
    assert_eq!(
        post(&details, json!({}), true).await.body["data"]["status"],
        "TERMINATED"
    );
    assert_eq!(
        post(&details, json!({}), true).await.body["data"]["status"],
        "FAILED"
    );

    // Validation: int 38xxxxx codes.
    for body in [
        json!({"job_type": "RESTART_AGENT", "bk_host_id": [1], "exclude_hosts": [2]}),
        json!({"job_type": "RESTART_AGENT"}),
        json!({"job_type": "INSTALL_AGENT", "bk_host_id": [1]}),
        json!({"job_type": "REPLACE_PROXY", "bk_host_id": [1]}),
        json!({"job_type": "RESTART_AGENT", "bk_host_id": [1], "bk_biz_id": 2}),
    ] {
        let r = post(
            &gw(&sim, "bk-nodeman", "api/job/operate/"),
            body.clone(),
            true,
        )
        .await;
        assert_eq!(r.body["result"], false, "{body}");
        assert_eq!(r.body["code"], 3800001, "{body}");
    }
    let r = post(
        &gw(&sim, "bk-nodeman", "api/job/999/details/"),
        json!({}),
        true,
    )
    .await;
    assert_eq!(r.body["code"], 3801012);
    // Plugin operate and job_list.
    let r = post(
        &gw(&sim, "bk-nodeman", "api/plugin/operate/"),
        json!({"job_type": "MAIN_RESTART_PLUGIN", "plugin_params": {"name": "bkmonitorbeat"}, "bk_host_id": [1]}),
        true,
    )
    .await;
    assert!(r.body["data"]["job_id"].is_u64(), "{}", r.text);
    let list = post(
        &gw(&sim, "bk-nodeman", "api/job/job_list/"),
        json!({"job_type": ["RESTART_AGENT"], "created_by": ["admin"], "page": 1, "pagesize": 10}),
        true,
    )
    .await;
    assert_eq!(list.body["data"]["total"], 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn job_seed_v2_and_v3_gateway() {
    let sim = sim().await;
    // Seed 003 (legacy v2 execute_job with `steps`) via ESB, bk_token in the body.
    let r = call(
        Method::POST,
        &esb(&sim, "job/execute_job/"),
        Some(seed("job_execute_job.json")),
        false,
    )
    .await;
    assert_eq!(r.body["result"], true, "{}", r.text);
    assert!(r.body["job_request_id"].is_string());
    let id = r.body["data"]["job_instance_id"].as_u64().unwrap();
    let v = poll(
        || async {
            post(
                &esb(&sim, "job/get_job_instance_status/"),
                with_creds(json!({"bk_biz_id": 1, "job_instance_id": id})),
                false,
            )
            .await
            .body
        },
        |v| v["data"]["is_finished"] == true,
    )
    .await;
    assert_eq!(v["data"]["job_instance"]["status"], 3);
    let steps = v["data"]["blocks"][0]["step_instances"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "the seed's three steps");
    assert_eq!(
        steps[0]["step_ip_status"].as_array().unwrap().len(),
        2,
        "the seed's two IPs"
    );

    // The same request as the current v3 call through the gateway, header credentials only.
    let seed_v: Value = serde_json::from_str(&seed("job_execute_job.json")).unwrap();
    let v3 = json!({
        "bk_scope_type": "biz",
        "bk_scope_id": seed_v["bk_biz_id"].to_string(),
        "job_plan_id": seed_v["bk_job_id"],
        "global_var_list": seed_v["global_vars"],
    });
    let r = post(&gw(&sim, "bk-job", "api/v3/execute_job_plan"), v3, true).await;
    assert_eq!(r.body["code"], 0, "{}", r.text);
    let id = r.body["data"]["job_instance_id"].as_u64().unwrap();
    let url = gw(
        &sim,
        "bk-job",
        &format!(
            "api/v3/get_job_instance_status?bk_scope_type=biz&bk_scope_id=1&job_instance_id={id}&return_ip_result=true"
        ),
    );
    let v = poll(
        || async { get(&url, true).await.body },
        |v| v["data"]["finished"] == true,
    )
    .await;
    assert_eq!(v["data"]["job_instance"]["status"], 3);
    let ips = v["data"]["step_instance_list"][0]["step_ip_result_list"]
        .as_array()
        .unwrap();
    assert!(ips.iter().all(|h| h["status"] == 9));
    // ESB jobv3 too.
    let r = post(
        &esb(&sim, "jobv3/get_job_instance_status/"),
        with_creds(json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id})),
        false,
    )
    .await;
    assert_eq!(r.body["data"]["finished"], true);
    let now = chrono::Utc::now().timestamp_millis();
    let list = get(
        &gw(
            &sim,
            "bk-job",
            &format!("api/v3/get_job_instance_list?bk_scope_type=biz&bk_scope_id=1&create_time_start={}&create_time_end={}", now - 60_000, now + 1000),
        ),
        true,
    )
    .await;
    assert_eq!(list.body["data"]["total"], 2, "{}", list.text);
    sim.shutdown().await;
}

#[tokio::test]
async fn logs_follow_each_hosts_result() {
    let sim = sim().await;
    for system in [System::Job, System::Nodeman] {
        sim.control()
            .set_behaviour(&Behaviour {
                system,
                failed_targets: Some(1),
                wait_for_user: false,
                duration_ms: None,
                targets: Some(2),
                times: Some(2),
            })
            .await
            .unwrap();
    }
    // JOB v3 through the gateway: the status names the hosts and the step.
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "2", "job_plan_id": 1000});
    let r = post(&gw(&sim, "bk-job", "api/v3/execute_job_plan"), body, true).await;
    let id = r.body["data"]["job_instance_id"].as_u64().unwrap();
    let scope = format!("bk_scope_type=biz&bk_scope_id=2&job_instance_id={id}");
    let url = gw(
        &sim,
        "bk-job",
        &format!("api/v3/get_job_instance_status?{scope}&return_ip_result=true"),
    );
    let v = poll(
        || async { get(&url, true).await.body },
        |v| v["data"]["finished"] == true,
    )
    .await;
    let step = &v["data"]["step_instance_list"][0];
    let step_id = step["step_instance_id"].as_u64().unwrap();
    let hosts = step["step_ip_result_list"].as_array().unwrap();
    let failed = hosts.iter().find(|h| h["status"] == 104).unwrap();
    let ok = hosts.iter().find(|h| h["status"] == 9).unwrap();
    // One host (GET), by id.
    let one = get(
        &gw(
            &sim,
            "bk-job",
            &format!(
                "api/v3/get_job_instance_ip_log?{scope}&step_instance_id={step_id}&host_id={}",
                failed["bk_host_id"]
            ),
        ),
        true,
    )
    .await;
    let log = one.body["data"]["log_content"].as_str().unwrap();
    assert!(
        log.contains("job_start") && log.ends_with("exit code 1\n"),
        "{log}"
    );
    assert_eq!(one.body["data"]["ip"], failed["ip"]);
    // Several hosts (POST), by IP, through ESB too.
    let batch = json!({"bk_scope_type": "biz", "bk_scope_id": "2", "job_instance_id": id,
        "step_instance_id": step_id,
        "ip_list": [{"bk_cloud_id": 0, "ip": failed["ip"]}, {"bk_cloud_id": 0, "ip": ok["ip"]}]});
    for r in [
        post(
            &gw(&sim, "bk-job", "api/v3/batch_get_job_instance_ip_log"),
            batch.clone(),
            true,
        )
        .await,
        post(
            &esb(&sim, "jobv3/batch_get_job_instance_ip_log/"),
            with_creds(batch.clone()),
            false,
        )
        .await,
    ] {
        let logs = r.body["data"]["script_task_logs"].as_array().unwrap();
        assert_eq!(logs.len(), 2, "{}", r.text);
        assert!(
            logs.iter()
                .any(|l| l["log_content"].as_str().unwrap().ends_with("done\n"))
        );
    }
    let mut wrong = batch;
    wrong["step_instance_id"] = json!(1);
    let r = post(
        &gw(&sim, "bk-job", "api/v3/batch_get_job_instance_ip_log"),
        wrong,
        true,
    )
    .await;
    assert_eq!(
        (r.body["result"].clone(), r.body["code"].clone()),
        (json!(false), json!(1241002))
    );

    // JOB v2 through ESB: every step, hosts grouped by status, HTML-escaped.
    let r = post(
        &esb(&sim, "job/execute_job/"),
        with_creds(json!({"bk_biz_id": 2, "bk_job_id": 100})),
        false,
    )
    .await;
    let id = r.body["data"]["job_instance_id"].as_u64().unwrap();
    let v2 = with_creds(json!({"bk_biz_id": 2, "job_instance_id": id}));
    let v = poll(
        || async {
            post(&esb(&sim, "job/get_job_instance_log/"), v2.clone(), false)
                .await
                .body
        },
        |v| v["data"][0]["is_finished"] == true,
    )
    .await;
    let groups = v["data"][0]["step_results"].as_array().unwrap();
    let statuses: Vec<&Value> = groups.iter().map(|g| &g["ip_status"]).collect();
    assert_eq!(statuses, [&json!(9), &json!(104)], "{v}");
    assert_eq!(groups[1]["ip_logs"][0]["exit_code"], 1);

    // NodeMan: the per-host log, GET through the gateway, POST through ESB.
    let body = json!({"job_type": "RESTART_AGENT", "bk_host_id": [7, 8]});
    let r = post(&gw(&sim, "bk-nodeman", "api/job/operate/"), body, true).await;
    let id = r.body["data"]["job_id"].as_u64().unwrap();
    let details = gw(&sim, "bk-nodeman", &format!("api/job/{id}/details/"));
    poll(
        || async { post(&details, json!({}), true).await.body },
        |v| v["data"]["status"] == "PART_FAILED",
    )
    .await;
    let r = get(
        &gw(
            &sim,
            "bk-nodeman",
            &format!("api/job/{id}/log/?instance_id=host|instance|host|8"),
        ),
        true,
    )
    .await;
    let steps = r.body["data"].as_array().unwrap();
    let statuses: Vec<&str> = steps
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["SUCCESS", "FAILED", "PENDING"], "{}", r.text);
    assert!(steps[1]["log"].as_str().unwrap().contains("执行失败"));
    let r = post(
        &esb(&sim, "nodeman/api/job/log/"),
        with_creds(json!({"job_id": id, "instance_id": "host|instance|host|7"})),
        false,
    )
    .await;
    assert!(
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "SUCCESS")
    );
    let r = post(
        &esb(&sim, "nodeman/api/job/log/"),
        with_creds(json!({"job_id": id, "instance_id": "host|instance|host|9"})),
        false,
    )
    .await;
    assert_eq!(r.body["result"], false, "{}", r.text);

    // The fault rules know the endpoint as `log`.
    sim.control()
        .add_fault(&FaultRule {
            system: SystemSel::Nodeman,
            endpoint: "log".into(),
            action: FaultAction::HttpStatus {
                status: 502,
                code: None,
            },
            times: Some(1),
        })
        .await
        .unwrap();
    let r = post(
        &esb(&sim, "nodeman/api/job/log/"),
        with_creds(json!({"job_id": id, "instance_id": "host|instance|host|7"})),
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let calls = sim.control().calls().await.unwrap();
    assert_eq!(calls.get(System::Nodeman, "log"), 4);
    assert!(calls.get(System::Job, "log") >= 5, "{calls:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn job_two_phase_terminate_and_waiting() {
    let sim = sim_with(|c| c.require_tenant = true).await;
    let exec = gw(&sim, "bk-job", "api/v3/execute_job_plan");
    let body =
        json!({"bk_scope_type": "biz", "bk_scope_id": "2", "job_plan_id": 7, "start_task": false});
    // Multi-tenant bk-job: 401 without X-Bk-Tenant-Id.
    let r = post(&exec, body.clone(), true).await;
    assert_eq!(r.status, 401);
    let c = client();
    let send = |url: String, body: Value| {
        let c = c.clone();
        async move {
            c.post(url)
                .header("X-Bkapi-Authorization", auth())
                .header("X-Bk-Tenant-Id", "default")
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let status_of = |id: u64| {
        let c = c.clone();
        let url = gw(&sim, "bk-job", "api/v3/get_job_instance_status");
        async move {
            c.post(url)
                .header("X-Bkapi-Authorization", auth())
                .header("X-Bk-Tenant-Id", "default")
                .json(&json!({"bk_scope_type": "biz", "bk_scope_id": "2", "job_instance_id": id}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let operate = gw(&sim, "bk-job", "api/v3/operate_job_instance");
    let id = send(exec.clone(), body.clone()).await["data"]["job_instance_id"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(SHORT_MS + 100)).await;
    let v = status_of(id).await;
    assert_eq!(v["data"]["job_instance"]["status"], 1, "not started");
    assert_eq!(v["data"]["finished"], false);
    let op = json!({"bk_scope_type": "biz", "bk_scope_id": "2", "job_instance_id": id, "operation_code": 2});
    assert_eq!(send(operate.clone(), op.clone()).await["result"], true);
    assert_eq!(
        send(operate.clone(), op).await["result"],
        false,
        "second start refused"
    );
    poll(
        || status_of(id),
        |v| v["data"]["job_instance"]["status"] == 3,
    )
    .await;

    // Terminate: 10, then 11.
    sim.control()
        .set_behaviour(&Behaviour {
            system: System::Job,
            failed_targets: None,
            wait_for_user: false,
            duration_ms: Some(20_000),
            targets: None,
            times: Some(1),
        })
        .await
        .unwrap();
    let mut started = body.clone();
    started["start_task"] = json!(true);
    let id = send(exec.clone(), started.clone()).await["data"]["job_instance_id"]
        .as_u64()
        .unwrap();
    assert_eq!(status_of(id).await["data"]["job_instance"]["status"], 2);
    let stop = json!({"bk_scope_type": "biz", "bk_scope_id": "2", "job_instance_id": id, "operation_code": 1});
    assert_eq!(send(operate.clone(), stop).await["result"], true);
    let a = status_of(id).await;
    assert_eq!(a["data"]["job_instance"]["status"], 10);
    assert_eq!(a["data"]["finished"], false);
    let b = status_of(id).await;
    assert_eq!(b["data"]["job_instance"]["status"], 11);
    assert_eq!(b["data"]["finished"], true);

    // Waiting for a person (7) until approved; failing hosts end in 4.
    sim.control()
        .set_behaviour(&Behaviour {
            system: System::Job,
            failed_targets: Some(1),
            wait_for_user: true,
            duration_ms: None,
            targets: None,
            times: Some(1),
        })
        .await
        .unwrap();
    let id = send(exec.clone(), started).await["data"]["job_instance_id"]
        .as_u64()
        .unwrap();
    poll(
        || status_of(id),
        |v| v["data"]["job_instance"]["status"] == 7,
    )
    .await;
    sim.control().approve(System::Job, id).await.unwrap();
    let v = poll(|| status_of(id), |v| v["data"]["finished"] == true).await;
    assert_eq!(v["data"]["job_instance"]["status"], 4);

    // Errors: int codes.
    assert_eq!(status_of(999).await["code"], 1244006);
    let r = send(
        exec.clone(),
        json!({"bk_scope_type": "biz", "bk_scope_id": "2"}),
    )
    .await;
    assert_eq!(r["code"], 1241002);
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_rules() {
    let sim = sim().await;
    let create = gw(&sim, "bk-gsekit", "api/2/job/");
    let body = json!({"job_object": "process", "job_action": "start", "scope": {}});
    // No credentials at all.
    let r = post(&create, body.clone(), false).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["code"], 1640101);
    assert_eq!(r.body["code_name"], "APP_VERIFY_FAILED");
    assert_eq!(r.body["result"], false);
    assert_eq!(r.headers["x-bkapi-error-code"], "1640101");
    assert!(r.headers.contains_key("x-bkapi-error-message"));
    // Wrong secret in the header.
    let bad = client()
        .post(&create)
        .header(
            "X-Bkapi-Authorization",
            json!({"bk_app_code": "bkops", "bk_app_secret": "nope", "bk_username": "a"})
                .to_string(),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    // The header wins over good body credentials.
    let mixed = client()
        .post(&create)
        .header(
            "X-Bkapi-Authorization",
            json!({"app_code": "bkops", "app_secret": "nope"}).to_string(),
        )
        .json(&with_creds(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(mixed.status(), 401);
    // App without a user on a user-verified resource.
    let r = client()
        .post(&create)
        .header(
            "X-Bkapi-Authorization",
            json!({"bk_app_code": "bkops", "bk_app_secret": "bkops-secret"}).to_string(),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 1640102);
    // Body credentials are fine for GSEKit, and access_token counts as a user.
    let r = post(&create, with_creds(body.clone()), false).await;
    assert_eq!(r.body["result"], true);
    let mut tok = body.clone();
    tok.as_object_mut().unwrap().extend(
        json!({"app_code": "bkops", "app_secret": "bkops-secret", "access_token": "t"})
            .as_object()
            .cloned()
            .unwrap(),
    );
    assert_eq!(post(&create, tok, false).await.body["result"], true);
    // bk-job refuses credentials outside the header.
    let r = post(
        &gw(&sim, "bk-job", "api/v3/execute_job_plan"),
        with_creds(json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": 1})),
        false,
    )
    .await;
    assert_eq!(r.status, 401);
    // ESB: its own envelope and codes.
    let r = post(
        &esb(&sim, "gsekit/api/job/create_job/"),
        json!({"bk_app_code": "bkops", "bk_app_secret": "nope", "bk_username": "a"}),
        false,
    )
    .await;
    assert_eq!(r.body["result"], false);
    assert_eq!(r.body["code"], 1306403);
    assert!(r.body["request_id"].is_string());
    // Unknown stage or gateway, and JOB with a trailing slash, are not found.
    for url in [
        format!("{}api/bk-gsekit/stag/api/2/job/", sim.base_url()),
        format!("{}api/bk-nope/prod/x/", sim.base_url()),
        gw(&sim, "bk-job", "api/v3/execute_job_plan/"),
    ] {
        let r = post(&url, json!({}), true).await;
        assert_eq!(r.status, 404, "{url}");
        assert_eq!(r.body["code"], 1640401);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_and_call_counts() {
    let sim = sim().await;
    let ctl = sim.control();
    let exec = gw(&sim, "bk-job", "api/v3/execute_job_plan");
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "3", "job_plan_id": 1});
    let fault = |action: FaultAction| FaultRule {
        system: SystemSel::Job,
        endpoint: "create".into(),
        action,
        times: Some(1),
    };

    // Commit, then time out: the client gives up, yet the job exists.
    ctl.add_fault(&fault(FaultAction::CommitThenTimeout { delay_ms: 3_000 }))
        .await
        .unwrap();
    let r = client()
        .post(&exec)
        .timeout(Duration::from_millis(300))
        .header("X-Bkapi-Authorization", auth())
        .json(&body)
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()));
    assert_eq!(ctl.jobs().await.unwrap().len(), 1);

    // Commit, then drop the connection without an answer.
    ctl.add_fault(&fault(FaultAction::CommitThenDrop))
        .await
        .unwrap();
    let r = client()
        .post(&exec)
        .header("X-Bkapi-Authorization", auth())
        .json(&body)
        .send()
        .await;
    let err = r.err().unwrap();
    assert!(!err.is_timeout(), "{err}");
    assert_eq!(ctl.jobs().await.unwrap().len(), 2);

    // Gateway 502 and 429: nothing created.
    ctl.add_fault(&fault(FaultAction::HttpStatus {
        status: 502,
        code: None,
    }))
    .await
    .unwrap();
    let r = post(&exec, body.clone(), true).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.body["code"], 1650200);
    assert_eq!(r.headers["x-bkapi-error-code"], "1650200");
    ctl.add_fault(&fault(FaultAction::RateLimit)).await.unwrap();
    let r = post(&exec, body.clone(), true).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["code"], 1642901);
    ctl.add_fault(&FaultRule {
        system: SystemSel::Any,
        endpoint: "*".into(),
        action: FaultAction::RateLimit,
        times: Some(1),
    })
    .await
    .unwrap();
    let r = post(
        &esb(&sim, "jobv3/execute_job_plan/"),
        with_creds(body.clone()),
        false,
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["code"], 1306429);
    // Business rejection in the system's envelope.
    ctl.add_fault(&fault(FaultAction::Reject {
        code: 1244032,
        message: Some("running job quota exceeded".into()),
    }))
    .await
    .unwrap();
    let r = post(&exec, body.clone(), true).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["result"], false);
    assert_eq!(r.body["code"], 1244032);
    assert_eq!(ctl.jobs().await.unwrap().len(), 2);
    // Slow answer.
    ctl.add_fault(&fault(FaultAction::DelayMs(250)))
        .await
        .unwrap();
    let t = Instant::now();
    assert_eq!(post(&exec, body.clone(), true).await.body["result"], true);
    assert!(t.elapsed() >= Duration::from_millis(250));
    // Rules with `times` are used up.
    assert_eq!(post(&exec, body.clone(), true).await.body["result"], true);

    let calls = ctl.calls().await.unwrap();
    assert_eq!(calls.get(System::Job, "create"), 8);
    assert_eq!(calls.get(System::Gsekit, "create"), 0);
    assert_eq!(ctl.jobs().await.unwrap().len(), 4);
    ctl.reset().await.unwrap();
    assert_eq!(ctl.calls().await.unwrap().total, 0);
    assert!(ctl.jobs().await.unwrap().is_empty());

    // Exactly one create, even with many polls.
    let r = post(&exec, body.clone(), true).await;
    let id = r.body["data"]["job_instance_id"].as_u64().unwrap();
    for _ in 0..3 {
        get(
            &gw(&sim, "bk-job", &format!("api/v3/get_job_instance_status?bk_scope_type=biz&bk_scope_id=3&job_instance_id={id}")),
            true,
        )
        .await;
    }
    let calls = ctl.calls().await.unwrap();
    assert_eq!(calls.get(System::Job, "create"), 1);
    assert_eq!(calls.get(System::Job, "status"), 3);
    // Finish on demand.
    let v = ctl.finish(System::Job, id).await.unwrap();
    assert_eq!(v.state, "3");
    sim.shutdown().await;
}
