use std::time::Duration;

use super::*;

fn spec() -> SandboxSpec {
    let mut s = SandboxSpec::new("registry.local/agentao/base:latest", "Run_42/x");
    s.limits.memory_mb = 1536;
    s.limits.cpus = 1.5;
    s.limits.wall = Duration::from_secs(600);
    s.limits.tmp_mb = 256;
    s.env = vec!["A=1".into(), "B=x=y".into(), "NOVALUE".into()];
    s.workdir = Some("/repo".into());
    s
}

#[test]
fn label_values_fit_kubernetes_rules() {
    assert_eq!(label_value("abc-1.2_3"), "abc-1.2_3");
    assert_eq!(label_value("a:b/c"), "a-b-c");
    assert_eq!(label_value("-x-"), "x");
    assert_eq!(label_value(&"a".repeat(80)).len(), 63);
}

#[test]
fn owner_ids_survive_the_label_encoding() {
    let owner = "1a2b3c4d:4242:987654";
    let label = encode_owner(owner);
    assert_eq!(label, "1a2b3c4d.4242.987654");
    assert_eq!(label_value(&label), label);
    assert_eq!(decode_owner(&label), owner);
}

#[test]
fn pod_names_are_dns_labels_and_differ() {
    let a = pod_name("Run_42/x");
    assert!(a.starts_with("agentao-run-42-x-"), "{a}");
    assert_eq!(a.len(), "agentao-run-42-x-".len() + 8);
    assert_ne!(a, pod_name("Run_42/x"));
    let long = pod_name(&"R".repeat(200));
    assert!(long.len() <= 63, "{long}");
    assert!(
        long.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    );
    assert!(pod_name("--").starts_with("agentao-") && pod_name("").len() == 16);
}

#[test]
fn the_pod_mirrors_the_local_container() {
    let pod = pod(
        &spec(),
        Duration::from_secs(30),
        "agentao-x-1",
        "ab:1:2",
        1000,
    )
    .unwrap();
    let v = serde_json::to_value(&pod).unwrap();
    let labels = &v["metadata"]["labels"];
    assert_eq!(labels["agentao.run"], "Run_42-x");
    assert_eq!(labels["agentao.owner"], "ab.1.2");
    assert_eq!(labels["agentao.deadline"], "1630");
    assert_eq!(labels["agentao.pool"], "1");
    assert_eq!(labels["agentao.isolated"], "1");
    let s = &v["spec"];
    assert_eq!(s["restartPolicy"], "Never");
    assert_eq!(s["activeDeadlineSeconds"], 630);
    assert_eq!(s["automountServiceAccountToken"], false);
    assert_eq!(s["enableServiceLinks"], false);
    let c = &s["containers"][0];
    assert_eq!(c["command"], serde_json::json!(["sleep", "630"]));
    assert_eq!(c["resources"]["limits"]["cpu"], "1500m");
    assert_eq!(c["resources"]["limits"]["memory"], "1536Mi");
    assert_eq!(c["resources"]["requests"], c["resources"]["limits"]);
    assert_eq!(c["workingDir"], "/repo");
    assert_eq!(
        c["env"],
        serde_json::json!([{"name": "A", "value": "1"}, {"name": "B", "value": "x=y"}])
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["SETUID", "SETGID"])
    );
    assert_eq!(s["volumes"][0]["emptyDir"]["medium"], "Memory");
    assert_eq!(s["volumes"][0]["emptyDir"]["sizeLimit"], "256Mi");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/tmp");
}

#[test]
fn a_pod_without_idle_scratch_or_isolation_says_so() {
    let mut s = spec();
    s.limits.tmp_mb = 0;
    s.limits.network = true;
    s.cmd = Some(vec!["proxy".into(), "--port=1".into()]);
    let v = serde_json::to_value(pod(&s, Duration::ZERO, "n", "a:1:2", 0).unwrap()).unwrap();
    assert!(v["metadata"]["labels"].get("agentao.pool").is_none());
    assert!(v["metadata"]["labels"].get("agentao.isolated").is_none());
    assert_eq!(v["spec"]["activeDeadlineSeconds"], 600);
    assert_eq!(
        v["spec"]["containers"][0]["command"],
        serde_json::json!(["proxy", "--port=1"])
    );
    assert!(
        v["spec"]
            .get("volumes")
            .is_none_or(|x| x == &serde_json::json!([]))
    );
}

#[test]
fn the_policy_denies_all_traffic_of_isolated_pods() {
    let v = serde_json::to_value(network_policy().unwrap()).unwrap();
    assert_eq!(
        v["spec"]["podSelector"]["matchLabels"]["agentao.isolated"],
        "1"
    );
    assert_eq!(
        v["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(v["spec"]["egress"], serde_json::json!([]));
}

#[test]
fn exec_argv_sets_directory_environment_user_and_timeout() {
    let req = ExecRequest::new(["pytest", "-q"])
        .workdir("/repo")
        .env("A=1")
        .env("bad")
        .user("1000:1001");
    let argv = exec_argv(&req, Duration::from_millis(1500)).unwrap();
    let want = "env -C /repo -- A=1 setpriv --reuid=1000 --regid=1001 --clear-groups \
                --inh-caps=-all --bounding-set=-all -- timeout -k 2 1.500 pytest -q";
    assert_eq!(argv.join(" "), want);
    let plain = exec_argv(&ExecRequest::new(["true"]), Duration::from_secs(2)).unwrap();
    assert_eq!(plain.join(" "), "timeout -k 2 2.000 true");
    let uid_only = exec_argv(&ExecRequest::new(["id"]).user("7"), Duration::from_secs(1)).unwrap();
    assert!(uid_only.contains(&"--regid=7".to_owned()));
    assert!(
        exec_argv(
            &ExecRequest::new(["id"]).user("nobody"),
            Duration::from_secs(1)
        )
        .is_err()
    );
}

#[test]
fn reaping_follows_owner_and_deadline() {
    let alive = |o: &str| o == "b00t:1:2";
    let reap = |owner: Option<&str>, deadline: Option<&str>| {
        should_reap(owner, deadline, 1000, 60, "b00t", alive)
    };
    assert!(
        !reap(Some("b00t.1.2"), Some("2000")),
        "live owner, deadline ahead"
    );
    assert!(
        reap(Some("b00t.9.9"), Some("2000")),
        "dead owner on this machine"
    );
    assert!(reap(Some("b00t.1.2"), Some("900")), "past deadline + grace");
    assert!(!reap(Some("b00t.1.2"), Some("990")), "within the grace");
    assert!(
        !reap(Some("0ther.1.2"), Some("2000")),
        "another machine's pod"
    );
    assert!(
        reap(Some("0ther.1.2"), Some("100")),
        "another machine's, overdue"
    );
    assert!(reap(None, Some("2000")), "no owner");
}
