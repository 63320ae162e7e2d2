//! What the Kubernetes backend sends: the sandbox Pod and the isolation NetworkPolicy, built
//! from a [`SandboxSpec`] to mirror the local container (`container.rs`), the label encoding
//! Kubernetes forces on us, the pod names, the argv of an exec, and the reaping rule.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::super::exec::ExecRequest;
use super::super::{LABEL_DEADLINE, LABEL_OWNER, LABEL_POOL, LABEL_RUN, SandboxError, SandboxSpec};

/// The name of the one container in a sandbox pod.
pub(crate) const CONTAINER: &str = "sandbox";
/// The NetworkPolicy that cuts sandbox pods off the network.
pub(crate) const POLICY_NAME: &str = "agentao-sandbox-isolation";
/// Label on sandbox pods that get no network; the policy selects it.
pub(crate) const LABEL_ISOLATED: &str = "agentao.isolated";

/// A label value Kubernetes accepts (`[A-Za-z0-9._-]`, at most 63 characters, alphanumeric at
/// both ends): other characters become `-`, and the value is cut to fit.
pub(crate) fn label_value(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The owner id (`<boot>:<pid>:<ticks>`, see `reaper::owner_id`) as a label value: `:` is not
/// allowed there, so it is written `.` (the parts themselves hold only hex digits, letters and
/// digits, never a dot). [`decode_owner`] reverses it.
pub(crate) fn encode_owner(owner: &str) -> String {
    owner.replace(':', ".")
}

/// The owner id from an `agentao.owner` label value written by [`encode_owner`].
pub(crate) fn decode_owner(label: &str) -> String {
    label.replace('.', ":")
}

/// `agentao-<run id>-<8 random hex digits>`: a DNS-1123 label (lowercase alphanumerics and
/// `-`, at most 63 characters), the run id cut to fit.
pub(crate) fn pod_name(run_id: &str) -> String {
    let run: String = run_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63 - "agentao--".len() - 8)
        .collect();
    let run = run.trim_matches('-');
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    if run.is_empty() {
        format!("agentao-{suffix}")
    } else {
        format!("agentao-{run}-{suffix}")
    }
}

/// Whether a sandbox for `spec` gets no network at all (the local `network_mode: none`).
/// A named Docker network (`spec.network`) has no Kubernetes counterpart: such a pod stays on
/// the cluster network.
pub(crate) fn isolated(spec: &SandboxSpec) -> bool {
    match spec.network.as_deref() {
        Some(n) => n == "none",
        None => !spec.limits.network,
    }
}

/// The sandbox Pod for `spec`: the limits, labels, wall clock and privileges of the local
/// container (see `container::create_started`). `now` is the unix time of creation.
pub(crate) fn pod(
    spec: &SandboxSpec,
    idle: Duration,
    name: &str,
    owner: &str,
    now: u64,
) -> Result<Pod, SandboxError> {
    let limits = &spec.limits;
    let wall_secs = limits.wall.as_secs().max(1) + idle.as_secs();
    let mut labels = serde_json::Map::new();
    labels.insert(LABEL_RUN.into(), json!(label_value(&spec.run_id)));
    labels.insert(LABEL_OWNER.into(), json!(label_value(&encode_owner(owner))));
    labels.insert(LABEL_DEADLINE.into(), json!((now + wall_secs).to_string()));
    if !idle.is_zero() {
        labels.insert(LABEL_POOL.into(), json!("1"));
    }
    if isolated(spec) {
        labels.insert(LABEL_ISOLATED.into(), json!("1"));
    }
    // The wall clock twice over: PID 1 sleeps it, and the kubelet kills the pod after it.
    let command = spec
        .cmd
        .clone()
        .unwrap_or_else(|| vec!["sleep".to_owned(), wall_secs.to_string()]);
    let env: Vec<_> = spec
        .env
        .iter()
        .filter_map(|e| e.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    // Requests equal limits: the pod is guaranteed what the local container is capped at.
    let resources = json!({
        "cpu": format!("{}m", (limits.cpus * 1000.0).round().max(1.0) as u64),
        "memory": format!("{}Mi", limits.memory_mb),
    });
    // The local tmpfs mounts, as memory-backed emptyDirs (counted against the memory limit
    // like a tmpfs). emptyDir folders are 0777 without the sticky bit, and `/run/lock`
    // cannot be noexec here.
    let scratch: &[(&str, &str, u64)] = &[
        ("tmp", "/tmp", limits.tmp_mb.max(1)),
        ("var-tmp", "/var/tmp", 16),
        ("run-lock", "/run/lock", 1),
    ];
    let (mounts, volumes): (Vec<_>, Vec<_>) = if limits.tmp_mb > 0 {
        scratch
            .iter()
            .map(|(vol, path, mb)| {
                (
                    json!({"name": vol, "mountPath": path}),
                    json!({"name": vol, "emptyDir": {"medium": "Memory", "sizeLimit": format!("{mb}Mi")}}),
                )
            })
            .unzip()
    } else {
        (Vec::new(), Vec::new())
    };
    let mut container = json!({
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": env,
        "resources": {"limits": resources, "requests": resources},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": false,
            // SETUID/SETGID only: pods/exec has no user option, so `setpriv` switches user
            // inside the pod (see `exec_argv`); every other capability is dropped.
            "capabilities": {"drop": ["ALL"], "add": ["SETUID", "SETGID"]},
        },
        "volumeMounts": mounts,
    });
    if let Some(dir) = &spec.workdir {
        container["workingDir"] = json!(dir);
    }
    // No process-count limit: `pids` is not a pod field (the node's kubelet sets
    // `podPidsLimit` for every pod), so `limits.pids` is not sent.
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": wall_secs,
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": volumes,
        }
    });
    serde_json::from_value(pod).map_err(|e| SandboxError::Tool {
        tool: "pod manifest".into(),
        reason: e.to_string(),
    })
}

/// The NetworkPolicy that denies all egress (and ingress) of isolated sandbox pods. Enforced
/// only where the cluster's network plugin enforces NetworkPolicies.
pub(crate) fn network_policy() -> Result<NetworkPolicy, SandboxError> {
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": POLICY_NAME, "labels": {LABEL_RUN: "policy"}},
        "spec": {
            "podSelector": {"matchLabels": {LABEL_ISOLATED: "1"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        }
    });
    serde_json::from_value(policy).map_err(|e| SandboxError::Tool {
        tool: "network policy manifest".into(),
        reason: e.to_string(),
    })
}

/// The argv a pods/exec runs for `req` (which has no user, workdir or env option):
/// `env -C <workdir> KEY=V… --` to set the directory and environment, then
/// `setpriv --reuid=U --regid=G --clear-groups --inh-caps=-all --bounding-set=-all --` to drop
/// to `uid[:gid]` (G = U when absent) with no capability left, then
/// `timeout -k 2 <seconds>` as the local exec does, then the command.
///
/// Supplementary groups are cleared rather than read with `--init-groups`, which setpriv
/// refuses for a uid without a passwd entry (the usual numeric `1000:1000`); Docker gives such
/// a user no supplementary groups either.
pub(crate) fn exec_argv(req: &ExecRequest, timeout: Duration) -> Result<Vec<String>, SandboxError> {
    let mut argv = Vec::new();
    let env: Vec<&String> = req.env.iter().filter(|e| e.find('=') > Some(0)).collect();
    if req.workdir.is_some() || !env.is_empty() {
        argv.push("env".to_owned());
        if let Some(dir) = &req.workdir {
            argv.extend(["-C".to_owned(), dir.clone()]);
        }
        argv.push("--".to_owned());
        argv.extend(env.into_iter().cloned());
    }
    if let Some(user) = &req.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, user));
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !numeric(uid) || !numeric(gid) {
            return Err(SandboxError::Tool {
                tool: "setpriv".into(),
                reason: format!("user {user:?} is not uid[:gid]"),
            });
        }
        argv.extend([
            "setpriv".to_owned(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
            "--inh-caps=-all".to_owned(),
            "--bounding-set=-all".to_owned(),
            "--".to_owned(),
        ]);
    }
    argv.extend([
        "timeout".to_owned(),
        "-k".to_owned(),
        "2".to_owned(),
        format!("{:.3}", timeout.as_secs_f64()),
    ]);
    argv.extend(req.cmd.iter().cloned());
    Ok(argv)
}

/// The reaper's rule for one pod, from its labels: reap when the deadline passed (plus
/// `grace` seconds), or when the owner process ran on this machine (`my_boot`) and is gone.
/// Unlike a local engine a cluster is shared between machines: a pod whose owner ran on
/// another boot id (another machine, or this one before a reboot) is left to its deadline.
pub(crate) fn should_reap(
    owner_label: Option<&str>,
    deadline_label: Option<&str>,
    now: u64,
    grace: u64,
    my_boot: &str,
    alive: impl Fn(&str) -> bool,
) -> bool {
    let deadline: u64 = deadline_label.and_then(|d| d.parse().ok()).unwrap_or(0);
    if now > deadline + grace {
        return true;
    }
    let owner = decode_owner(owner_label.unwrap_or(""));
    let parts: Vec<&str> = owner.split(':').collect();
    if parts.len() == 3 && parts[0] != my_boot {
        return false;
    }
    !alive(&owner)
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
