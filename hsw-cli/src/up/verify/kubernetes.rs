//! Part of step 12: the cloud cluster's Kubernetes, checked from its control plane over SSH (not with
//! `--hpc-only`): every cloud VM is a node and `Ready`; then a probe (the bundle's `hsw/probe` image, Debian's
//! static busybox, nothing pulled) serves a page from a pod on the control plane, and a pod scheduled on the GPU
//! worker (else a CPU worker) resolves `kubernetes.default.svc.cluster.local` through CoreDNS's Service and
//! fetches that page from the first pod's address across the pod network. The probe's pods live in the namespace
//! [`PROBE_NAMESPACE`], which is removed afterwards. Each check is one line of the summary.
//!
//! The probe is the fixed script [`PROBE_SCRIPT`]; its only arguments are node names from the inventory, each
//! quoted for the remote shell (`shlex`).

use std::io::Write;
use std::time::Instant;

use hsw_core::ansible::hosts::{Deployment, Host, Role};

use super::{first_line, ssh, Poll};
use crate::error::Error;
use crate::up::{say, Ctx};

/// The admin kubeconfig kubeadm writes on the control plane (`kubeadm_admin_conf`).
const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";

/// The nodes as JSON, asked on the control plane (read by [`ready_nodes`]; `up`'s check and `status`).
pub(crate) const GET_NODES: [&str; 9] = [
    "sudo",
    "-n",
    "kubectl",
    "--kubeconfig",
    ADMIN_CONF,
    "get",
    "nodes",
    "-o",
    "json",
];

/// The namespace of the probe's pods.
pub const PROBE_NAMESPACE: &str = "hsw-verify";

/// The probe, run as root on the control plane with `sh -c SCRIPT hsw-probe SERVER_NODE CLIENT_NODE`. It prints
/// `server NODE IP`, `client NODE IP`, then the client pod's log (busybox nslookup's answer, then the HTTP
/// response whose last line is the server pod's hostname, `server`). Exit 3: no probe image; 4: a pod did not
/// start or finish. The request goes through `nc`: the static busybox's `wget` resolves even an address with
/// glibc's NSS, which a static binary in an image of nothing else cannot load (it segfaults).
pub const PROBE_SCRIPT: &str = r#"set -eu
export KUBECONFIG=/etc/kubernetes/admin.conf
ns=hsw-verify server_node=$1 client_node=$2
img=$(ctr -n k8s.io images ls -q | grep -m1 '^registry.hsw.invalid/hsw/probe:') \
  || { echo "containerd on $(hostname) has no registry.hsw.invalid/hsw/probe image (the bundle's)" >&2; exit 3; }
kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
kubectl -n "$ns" delete pod server client --ignore-not-found --wait=true >/dev/null
on() { printf '{"apiVersion":"v1","spec":{"nodeSelector":{"kubernetes.io/hostname":"%s"},"tolerations":[{"operator":"Exists"}]}}' "$1"; }
phase() { kubectl -n "$ns" get pod "$1" -o jsonpath='{.status.phase}'; }
why() { kubectl -n "$ns" describe pod "$1" | tail -n 15 >&2; kubectl -n "$ns" logs "$1" >&2 2>/dev/null || true; }
kubectl -n "$ns" run server --image="$img" --image-pull-policy=Never --restart=Never --overrides="$(on "$server_node")" \
  --command -- /bin/busybox httpd -f -p 8080 -h /etc >/dev/null
kubectl -n "$ns" wait --for=condition=Ready pod/server --timeout=300s >/dev/null \
  || { echo "the probe's server pod on $server_node did not become Ready" >&2; why server; exit 4; }
ip=$(kubectl -n "$ns" get pod server -o jsonpath='{.status.podIP}')
kubectl -n "$ns" run client --image="$img" --image-pull-policy=Never --restart=Never --overrides="$(on "$client_node")" \
  --command -- /bin/busybox sh -c "/bin/busybox nslookup -type=a kubernetes.default.svc.cluster.local && printf 'GET /hostname HTTP/1.0\r\n\r\n' | /bin/busybox nc -w 10 $ip 8080" >/dev/null
i=0
while p=$(phase client); [ "$p" != Succeeded ] && [ "$p" != Failed ] && [ $i -lt 150 ]; do sleep 2; i=$((i + 1)); done
[ "$p" = Succeeded ] || { echo "the probe's client pod on $client_node ended $p" >&2; why client; exit 4; }
echo "server $server_node $ip"
echo "client $(kubectl -n "$ns" get pod client -o jsonpath='{.spec.nodeName} {.status.podIP}')"
kubectl -n "$ns" logs client
kubectl delete namespace "$ns" --wait=false >/dev/null
"#;

/// The Kubernetes checks; returns one line per check for the summary (none without a control plane).
pub(super) fn check_kubernetes(
    ctx: &Ctx<'_>,
    user: &str,
    d: &Deployment,
    poll: Poll,
    timeout: std::time::Duration,
    out: &mut dyn Write,
) -> Result<Vec<String>, Error> {
    let Some(cp) = d.with_role(Role::ControlPlane).next() else {
        return Ok(Vec::new());
    };
    let mut verified = vec![check_ready(ctx, user, cp, d, poll, timeout, out)?];
    let client = d
        .with_role(Role::GpuWorker)
        .next()
        .or_else(|| d.with_role(Role::CpuWorker).next());
    match client {
        Some(client) => verified.extend(check_pod_network(ctx, user, cp, client, out)?),
        None => verified.push(
            "pod network: not probed (the cloud cluster has no worker besides the control plane)"
                .into(),
        ),
    }
    Ok(verified)
}

/// `kubectl get nodes` until every cloud VM is a node and Ready (or `timeout`).
fn check_ready(
    ctx: &Ctx<'_>,
    user: &str,
    cp: &Host,
    d: &Deployment,
    poll: Poll,
    timeout: std::time::Duration,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let want: Vec<&str> = d.of_cluster("cloud").map(|h| h.name.as_str()).collect();
    let t = Instant::now();
    loop {
        let (ok, stdout, stderr) = ssh(ctx, user, cp, &GET_NODES)?;
        let nodes = if ok { ready_nodes(&stdout) } else { Vec::new() };
        let not_ready: Vec<&str> = want
            .iter()
            .copied()
            .filter(|w| !nodes.iter().any(|(n, _, ready)| n == w && *ready))
            .collect();
        if not_ready.is_empty() {
            let mut versions: Vec<&str> = nodes.iter().map(|(_, v, _)| v.as_str()).collect();
            versions.sort_unstable();
            versions.dedup();
            say(
                out,
                format!(
                    "Kubernetes nodes Ready after {} s: {}",
                    t.elapsed().as_secs(),
                    want.join(", ")
                ),
            );
            return Ok(format!(
                "Kubernetes {}: {} node{} Ready ({})",
                versions.join(", "),
                want.len(),
                if want.len() == 1 { "" } else { "s" },
                want.join(", ")
            ));
        }
        if t.elapsed() > timeout {
            let now = if ok {
                let seen: Vec<String> = nodes
                    .iter()
                    .map(|(n, _, r)| format!("{n} {}", if *r { "Ready" } else { "NotReady" }))
                    .collect();
                format!(
                    "nodes: {}",
                    if seen.is_empty() {
                        "none".into()
                    } else {
                        seen.join(", ")
                    }
                )
            } else {
                format!("kubectl: {}", first_line(&stderr))
            };
            return Err(Error::invalid(format!(
                "{} not Ready on Kubernetes within {} s ({now}); look at `journalctl -u kubelet` there and \
                 `kubectl describe node` on {}, then run `hsw-cli up` again",
                not_ready.join(", "),
                timeout.as_secs(),
                cp.name
            )));
        }
        std::thread::sleep(poll.every);
    }
}

/// `(name, kubelet version, Ready)` of each node in `kubectl get nodes -o json`.
pub fn ready_nodes(json: &str) -> Vec<(String, String, bool)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let name = n["metadata"]["name"].as_str()?.to_owned();
            let version = n["status"]["nodeInfo"]["kubeletVersion"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            let ready = n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            Some((name, version, ready))
        })
        .collect()
}

/// The probe: CoreDNS answers in a pod on `client`, and that pod fetches a page from a pod on `cp`.
fn check_pod_network(
    ctx: &Ctx<'_>,
    user: &str,
    cp: &Host,
    client: &Host,
    out: &mut dyn Write,
) -> Result<Vec<String>, Error> {
    let quote = |s: &str| {
        shlex::try_quote(s)
            .map(|q| q.into_owned())
            .map_err(|e| Error::invalid(format!("cannot quote {s:?} for the remote shell: {e}")))
    };
    let script = quote(PROBE_SCRIPT)?;
    let (server_node, client_node) = (quote(&cp.name)?, quote(&client.name)?);
    let remote = [
        "sudo",
        "-n",
        "sh",
        "-c",
        &script,
        "hsw-probe",
        &server_node,
        &client_node,
    ];
    let (ok, stdout, stderr) = ssh(ctx, user, cp, &remote)?;
    let fail = |what: &str| {
        Error::invalid(format!(
            "{what}: {}; look at `kubectl -n {PROBE_NAMESPACE} describe pods` on {} and run `hsw-cli up` again",
            last_lines(if stderr.trim().is_empty() { &stdout } else { &stderr }),
            cp.name
        ))
    };
    if !ok {
        return Err(fail("the pod-network probe failed"));
    }
    let probe =
        parse_probe(&stdout).ok_or_else(|| fail("the pod-network probe printed no result"))?;
    let Some(service_ip) = probe.dns_answer else {
        return Err(fail(
            "CoreDNS did not answer for kubernetes.default.svc.cluster.local in the probe's pod",
        ));
    };
    if probe.page != "server" {
        return Err(fail(
            "the probe's client pod did not fetch the server pod's page",
        ));
    }
    say(
        out,
        format!(
            "pod {} on {} -> pod {}:8080 on {}: page `server`",
            probe.client_ip, probe.client_node, probe.server_ip, probe.server_node
        ),
    );
    Ok(vec![
        format!(
            "CoreDNS answers in a pod on {}: kubernetes.default.svc.cluster.local is {service_ip}",
            probe.client_node
        ),
        format!(
            "pod network: a pod on {} ({}) fetched a page from a pod on {} ({})",
            probe.client_node, probe.client_ip, probe.server_node, probe.server_ip
        ),
    ])
}

/// What [`PROBE_SCRIPT`] printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The server pod's node and address.
    pub server_node: String,
    /// Its pod IP.
    pub server_ip: String,
    /// The client pod's node.
    pub client_node: String,
    /// Its pod IP.
    pub client_ip: String,
    /// The address nslookup gave for `kubernetes.default.svc.cluster.local`.
    pub dns_answer: Option<String>,
    /// The page the client fetched (its last line).
    pub page: String,
}

/// Reads the probe's output; `None` when its `server`/`client` lines are missing.
pub fn parse_probe(stdout: &str) -> Option<Probe> {
    let mut lines = stdout.lines();
    let mut server = None;
    let mut client = None;
    for l in lines.by_ref() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["server", node, ip] => server = Some((node.to_string(), ip.to_string())),
            ["client", node, ip] => {
                client = Some((node.to_string(), ip.to_string()));
                break;
            }
            _ => {}
        }
    }
    let ((server_node, server_ip), (client_node, client_ip)) = (server?, client?);
    let log: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
    // busybox nslookup: `Name:\tkubernetes.default.svc.cluster.local` then `Address: 10.96.0.1`.
    let dns_answer = log
        .iter()
        .position(|l| l.starts_with("Name:") && l.contains("kubernetes.default.svc.cluster.local"))
        .and_then(|i| log.get(i + 1))
        .and_then(|l| l.strip_prefix("Address:"))
        .map(|a| a.trim().to_owned());
    Some(Probe {
        server_node,
        server_ip,
        client_node,
        client_ip,
        dns_answer,
        page: log.last().map(|l| l.to_string()).unwrap_or_default(),
    })
}

/// The last lines of a command's output, joined (for an error).
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

/// Answers for a healthy Kubernetes: every cloud VM a Ready node, the probe passing (for other steps' tests).
#[cfg(test)]
pub fn answer_healthy(runner: &crate::runner::fake::FakeRunner, d: &Deployment) {
    let cloud: Vec<(&str, bool)> = d
        .of_cluster("cloud")
        .map(|h| (h.name.as_str(), true))
        .collect();
    let (Some(cp), Some(gw)) = (
        d.with_role(Role::ControlPlane).next(),
        d.with_role(Role::GpuWorker).next(),
    ) else {
        return;
    };
    runner.on(&["get", "nodes"], 0, &tests::nodes(&cloud)).on(
        &["hsw-probe"],
        0,
        &tests::PROBE_OUT
            .replace(" cp ", &format!(" {} ", cp.name))
            .replace(" gw ", &format!(" {} ", gw.name)),
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::{fixture, text, Fixture};
    use std::time::Duration;

    const FAST: Poll = Poll {
        every: Duration::from_millis(1),
        ssh_deadline: Duration::from_millis(50),
    };

    pub fn nodes(ready: &[(&str, bool)]) -> String {
        serde_json::json!({"items": ready.iter().map(|(n, r)| serde_json::json!({
            "metadata": {"name": n},
            "status": {"nodeInfo": {"kubeletVersion": "v1.34.4"},
                       "conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": if *r { "True" } else { "False" }}]}
        })).collect::<Vec<_>>()})
        .to_string()
    }

    /// The summary lines of a healthy cluster of `names` (control plane `cp`, GPU worker `gw`) answering
    /// [`PROBE_OUT`].
    pub fn healthy_lines(names: &[&str], cp: &str, gw: &str) -> [String; 3] {
        [
            format!(
                "Kubernetes v1.34.4: {} nodes Ready ({})",
                names.len(),
                names.join(", ")
            ),
            format!(
                "CoreDNS answers in a pod on {gw}: kubernetes.default.svc.cluster.local is 10.96.0.1"
            ),
            format!(
                "pod network: a pod on {gw} (10.244.1.3) fetched a page from a pod on {cp} (10.244.0.7)"
            ),
        ]
    }

    pub const PROBE_OUT: &str = "server cp 10.244.0.7\nclient gw 10.244.1.3\nServer:\t\t10.96.0.10\n\
        Address:\t10.96.0.10:53\n\nName:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\n\nHTTP/1.1 200 OK\n\
        Connection: close\nContent-Length: 7\n\nserver\n";

    #[test]
    fn the_probe_output_is_read_strictly() {
        let p = parse_probe(PROBE_OUT).unwrap();
        assert_eq!(
            p,
            Probe {
                server_node: "cp".into(),
                server_ip: "10.244.0.7".into(),
                client_node: "gw".into(),
                client_ip: "10.244.1.3".into(),
                dns_answer: Some("10.96.0.1".into()),
                page: "server".into(),
            }
        );
        let no_dns =
            parse_probe("server cp 1\nclient gw 2\n*** Can't find kubernetes: NXDOMAIN\nserver\n")
                .unwrap();
        assert_eq!(no_dns.dns_answer, None);
        assert_eq!(parse_probe("client gw 2\n"), None);
        assert_eq!(parse_probe(""), None);
        assert_eq!(ready_nodes("not json"), []);
        assert_eq!(
            ready_nodes(&nodes(&[("a", true), ("b", false)])),
            [
                ("a".to_owned(), "v1.34.4".to_owned(), true),
                ("b".to_owned(), "v1.34.4".to_owned(), false)
            ]
        );
    }

    #[test]
    fn nodes_ready_then_coredns_and_the_pod_network_answer() {
        let f = Fixture::new(Some("sb"));
        let d = fixture::loaded(&fixture::session(), &f.ctx(&FakeRunner::new())).deployment;
        let cloud: Vec<(&str, bool)> = d
            .of_cluster("cloud")
            .map(|h| (h.name.as_str(), true))
            .collect();
        let cp = d.with_role(Role::ControlPlane).next().unwrap();
        let gw = d.with_role(Role::GpuWorker).next().unwrap();
        let runner = FakeRunner::new();
        // First not yet Ready, then Ready.
        let mut first = cloud.clone();
        first[0].1 = false;
        runner
            .on_full(&["get", "nodes"], Some(0), &nodes(&first), "", Some(1))
            .on(&["get", "nodes"], 0, &nodes(&cloud))
            .on(
                &["hsw-probe"],
                0,
                &PROBE_OUT
                    .replace(" cp ", &format!(" {} ", cp.name))
                    .replace(" gw ", &format!(" {} ", gw.name)),
            );
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        let got = check_kubernetes(&ctx, "hsw", &d, FAST, Duration::from_secs(5), &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = cloud.iter().map(|(n, _)| *n).collect();
        assert_eq!(got, healthy_lines(&names, &cp.name, &gw.name));
        assert!(
            text(&out).contains("Kubernetes nodes Ready after"),
            "{}",
            text(&out)
        );
        // The probe runs on the control plane, as root, with the node names as its arguments.
        let argv = runner
            .argvs()
            .into_iter()
            .find(|a| a.contains(&"hsw-probe".to_owned()))
            .unwrap();
        assert!(argv.contains(&format!("hsw@{}", cp.ip)), "{argv:?}");
        assert!(
            argv.ends_with(&["hsw-probe".to_owned(), cp.name.clone(), gw.name.clone()]),
            "{argv:?}"
        );
        let script = &argv[argv.len() - 4];
        assert_eq!(shlex::split(script).unwrap(), [PROBE_SCRIPT]);
    }

    #[test]
    fn a_node_not_ready_or_a_failed_probe_is_named() {
        let f = Fixture::new(Some("sb"));
        let d = fixture::loaded(&fixture::session(), &f.ctx(&FakeRunner::new())).deployment;
        let cloud: Vec<(&str, bool)> = d
            .of_cluster("cloud")
            .map(|h| (h.name.as_str(), false))
            .collect();
        let runner = FakeRunner::new();
        runner.on(&["get", "nodes"], 0, &nodes(&cloud));
        let ctx = f.ctx(&runner);
        let e = check_kubernetes(
            &ctx,
            "hsw",
            &d,
            FAST,
            Duration::from_millis(20),
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("not Ready on Kubernetes within 0 s (nodes: "),
            "{e}"
        );
        assert!(e.contains("NotReady"), "{e}");

        let ready: Vec<(&str, bool)> = cloud.iter().map(|(n, _)| (*n, true)).collect();
        for (code, stdout, stderr, want) in [
            (4, "", "the probe's client pod on gw ended Failed\n", "the pod-network probe failed: the probe's client pod on gw ended Failed"),
            (0, "server a 1\nclient b 2\nName:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\nwget: download timed out\n", "", "did not fetch the server pod's page"),
            (0, "server a 1\nclient b 2\n** server can't find kubernetes.default.svc.cluster.local: NXDOMAIN\nserver\n", "", "CoreDNS did not answer"),
            (0, "nothing\n", "", "printed no result"),
        ] {
            let runner = FakeRunner::new();
            runner
                .on(&["get", "nodes"], 0, &nodes(&ready))
                .on_full(&["hsw-probe"], Some(code), stdout, stderr, None);
            let ctx = f.ctx(&runner);
            let e = check_kubernetes(&ctx, "hsw", &d, FAST, Duration::from_secs(5), &mut Vec::new())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(e.contains("kubectl -n hsw-verify describe pods"), "{e}");
        }
    }
}
