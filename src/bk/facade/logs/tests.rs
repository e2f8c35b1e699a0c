use super::super::phases::job_host_status_text;
use super::job::{JobHosts, add_wanted};
use super::*;
use crate::bk::job::{CloudIp, LogHosts};
use serde_json::json;

fn target(name: &str, outcome: TargetOutcome) -> TargetLog {
    TargetLog::new(name.into(), outcome, String::new())
}

#[test]
fn failures_come_first_and_a_filter_keeps_what_it_names() {
    let mut b = target("10.0.0.2", TargetOutcome::Failed);
    b.aliases = vec!["102".into()];
    let targets = vec![
        target("10.0.0.1", TargetOutcome::Succeeded),
        b,
        target("10.0.0.3", TargetOutcome::Running),
        target("10.0.0.4", TargetOutcome::Failed),
    ];
    let (shown, all) = select(targets.clone(), None);
    let order: Vec<&str> = shown.iter().map(|t| t.target.as_str()).collect();
    assert_eq!(order, ["10.0.0.2", "10.0.0.4", "10.0.0.1", "10.0.0.3"]);
    assert_eq!(all.len(), 4);
    let (shown, all) = select(targets.clone(), Some("102"));
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].target, "10.0.0.2");
    assert_eq!(all.len(), 4, "every name, for a filter that finds nothing");
    assert!(select(targets, Some("10.9.9.9")).0.is_empty());
}

#[test]
fn gsekit_processes_from_a_job_task_page() -> Result<(), serde_json::Error> {
    let page: gsekit::JobTaskPage = serde_json::from_value(json!({
        "count": 2,
        "status_counter": {"pending": 0, "running": 0, "succeeded": 1, "failed": 1, "ignored": 0},
        "list": [
            {"id": 1, "job_id": 5, "bk_process_id": 41, "status": "succeeded", "err_code": 0,
             "start_time": "2024-01-01 10:00:00", "end_time": "2024-01-01 10:00:03",
             "pipeline_id": "p1",
             "extra_data": {"failed_reason": "", "err_code": 0, "retryable": false, "solutions": [],
                "process_info": {"host": {"bk_host_innerip": "10.0.0.1", "bk_host_id": 7},
                                 "process": {"bk_process_name": "nginx", "bk_process_id": 41}}}},
            {"id": 2, "job_id": 5, "bk_process_id": 42, "status": "failed", "err_code": 3,
             "extra_data": {"failed_reason": "进程启动超时", "err_code": 3, "retryable": true,
                "solutions": [{"solution": "check the start command"}],
                "process_info": {"host": {"bk_host_innerip": "10.0.0.2", "bk_host_id": 8},
                                 "process": {"bk_process_name": "nginx", "bk_process_id": 42}}}}
        ]
    }))?;
    let (shown, _) = select(page.list.iter().map(gsekit_target).collect(), None);
    assert_eq!(shown[0].target, "10.0.0.2 nginx");
    assert_eq!(shown[0].outcome, TargetOutcome::Failed);
    assert_eq!(shown[0].status, "failed (err_code 3)");
    assert_eq!(shown[0].reason.as_deref(), Some("进程启动超时"));
    assert!(shown[0].answers_to("42") && shown[0].answers_to("8"));
    assert_eq!(shown[1].status, "succeeded");
    assert_eq!(shown[1].reason, None);
    Ok(())
}

#[test]
fn bkflow_nodes_from_states_and_details() -> Result<(), serde_json::Error> {
    let root: crate::bk::bkflow::StateNode = serde_json::from_value(json!({
        "id": "root", "state": "FAILED", "root_id": "root", "parent_id": "root",
        "version": "v", "loop": 1, "retry": 0, "skip": false, "error_ignorable": false,
        "error_ignored": false, "elapsed_time": 3, "start_time": "2024-01-01 10:00:00",
        "finish_time": null,
        "children": {
            "n1": {"id": "n1", "state": "FINISHED", "retry": 0, "skip": false, "children": {}},
            "n2": {"id": "n2", "state": "FAILED", "retry": 2, "skip": false, "children": {}}
        }
    }))?;
    let detail: crate::bk::bkflow::NodeDetail = serde_json::from_value(json!({
        "id": "n2", "name": "deploy", "state": "FAILED", "inputs": {}, "outputs": [],
        "ex_data": "HTTP 500 from the deploy service", "error_ignorable": false
    }))?;
    let leaves = root.leaves();
    let ok = bkflow_target(leaves[0].0, leaves[0].1, None);
    assert_eq!(
        (ok.target.as_str(), ok.outcome),
        ("n1", TargetOutcome::Succeeded)
    );
    let failed = bkflow_target(leaves[1].0, leaves[1].1, Some(&detail));
    assert_eq!(failed.target, "deploy");
    assert_eq!(failed.status, "FAILED (retried 2 times)");
    assert_eq!(
        failed.reason.as_deref(),
        Some("HTTP 500 from the deploy service")
    );
    assert!(failed.answers_to("n2") && failed.answers_to("DEPLOY"));
    Ok(())
}

#[test]
fn a_nodeman_host_takes_its_failed_steps_last_line_as_reason() -> Result<(), serde_json::Error> {
    let host: nodeman::HostResult = serde_json::from_value(json!({
        "instance_id": "host|instance|host|1001", "ip": "10.1.4.2", "inner_ip": "10.1.4.2",
        "bk_host_id": 1001, "bk_cloud_id": 0, "status": "FAILED",
        "status_display": "执行失败", "step": "重启"
    }))?;
    let steps: Vec<nodeman::LogStep> = serde_json::from_value(json!([
        {"step": "下发脚本", "status": "SUCCESS", "log": "[10:00:00 INFO] ok"},
        {"step": "重启", "status": "FAILED",
         "log": "[10:00:01 INFO] 开始重启\n[10:00:02 ERROR] agent 未响应\n"}
    ]))?;
    let mut t = nodeman_target(&host);
    assert_eq!(t.reason.as_deref(), Some("重启"));
    assert!(t.answers_to("1001") && t.answers_to("host|instance|host|1001"));
    fill_nodeman_steps(&mut t, &steps);
    assert_eq!(t.steps.len(), 2);
    assert_eq!(
        t.reason.as_deref(),
        Some("重启: [10:00:02 ERROR] agent 未响应")
    );
    Ok(())
}

#[test]
fn a_job_host_counts_with_its_worst_step() {
    let mut hosts = JobHosts::default();
    let ok = job_host_status_text(Some(9));
    let bad = format!("{}, exit code 1", job_host_status_text(Some(104)));
    hosts.add(
        "10.0.0.1".into(),
        vec!["1".into()],
        "copy",
        Some(9),
        ok.clone(),
    );
    hosts.add(
        "10.0.0.1".into(),
        vec!["1".into()],
        "run",
        Some(104),
        bad.clone(),
    );
    hosts.add("10.0.0.2".into(), vec!["2".into()], "copy", Some(9), ok);
    assert_eq!(hosts.targets.len(), 2);
    let t = &hosts.targets[0];
    assert_eq!(t.outcome, TargetOutcome::Failed);
    assert_eq!(t.status, bad);
    assert_eq!(
        t.reason.as_deref(),
        Some("step 'run': host status 104 (script exited non-zero), exit code 1")
    );
    assert_eq!(t.steps.len(), 2);
    assert_eq!(hosts.targets[1].outcome, TargetOutcome::Succeeded);
}

#[test]
fn job_log_calls_group_hosts_by_step_and_naming() {
    let mut wanted = Vec::new();
    let ip = |s: &str| {
        Some(CloudIp {
            bk_cloud_id: 0,
            ip: s.into(),
        })
    };
    add_wanted(&mut wanted, 1, Some(11), ip("10.0.0.1"), 0);
    add_wanted(&mut wanted, 1, Some(12), ip("10.0.0.2"), 1);
    add_wanted(&mut wanted, 2, Some(11), ip("10.0.0.1"), 0);
    add_wanted(&mut wanted, 1, None, ip("10.0.0.3"), 2);
    add_wanted(&mut wanted, 1, None, None, 3);
    assert_eq!(wanted.len(), 3);
    assert_eq!(wanted[0], (1, LogHosts::Ids(vec![11, 12]), vec![0, 1]));
    assert_eq!(wanted[1], (2, LogHosts::Ids(vec![11]), vec![0]));
    assert!(
        matches!(&wanted[2], (1, LogHosts::Ips(ips), owners) if ips.len() == 1 && owners == &[2])
    );
}
