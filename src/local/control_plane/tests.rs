//! The control plane's pure parts: the API server's arguments per version, and the like.

use super::*;

#[test]
fn insecure_port_only_before_1_24() {
    let dir = Path::new("/cp");
    assert!(apiserver_args(dir, 1, 2, Some(20)).contains(&"--insecure-port=0".to_string()));
    assert!(apiserver_args(dir, 1, 2, None).contains(&"--insecure-port=0".to_string()));
    assert!(!apiserver_args(dir, 1, 2, Some(33)).contains(&"--insecure-port=0".to_string()));
}

#[test]
fn free_ports_differ() {
    let [a, b, c] = free_ports().unwrap();
    assert!(a != b && b != c && a != c);
}

#[test]
fn log_tail_keeps_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("x.log");
    std::fs::write(&log, "1\n2\n3\n").unwrap();
    assert_eq!(log_tail(&log, 2), "2\n3");
    assert!(log_tail(&dir.path().join("missing"), 2).starts_with("(unreadable"));
}
