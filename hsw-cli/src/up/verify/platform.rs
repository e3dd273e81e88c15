//! Step 12: what the platform playbooks promise, checked on the guests over SSH (not with `--hpc-only`):
//! containerd answers `ctr version` on every cloud VM; Kubernetes (`kubernetes.rs`: every node Ready, CoreDNS
//! and the pod network answering in pods); PostgreSQL (on [`Deployment::postgres_host`]) takes a
//! local connection and listens on 127.0.0.1:5432; Prometheus (on [`Deployment::monitoring_server`]) scrapes
//! the node exporter of every VM it can reach (all of them where the networks route between the clusters, its
//! own cluster's otherwise); the segmentation policy refuses an HPC VM's connections to a cloud VM (SSH, the node
//! exporter, kubelet) and, where
//! the networks route, lets only the monitoring server scrape across; every VM's sshd refuses passwords. Each
//! check is one line of the summary. The checks follow cluster.yaml: monitoring, segmentation and password
//! login are checked as the file sets them.
//!
//! The remote commands are fixed text; the only values in them are VM addresses and ports from the inventory.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use hsw_core::ansible::hosts::{Deployment, Host, Role};
use hsw_core::config::model::MlflowRuntime;
use hsw_core::config::ClusterConfig;

use super::{first_line, said, ssh, Poll};
use crate::error::Error;
use crate::up::{say, Ctx};

/// The node exporter's port (`monitoring_node_exporter_port` in `ansible/group_vars/all/monitoring.yml`).
const NODE_EXPORTER_PORT: u16 = 9100;

/// kubelet's port, on every Kubernetes node.
const KUBELET_PORT: u16 = 10250;

/// MLflow's tracking server, on the PostgreSQL VM (`mlflow_server_port` in `ansible/roles/mlflow_server`).
const MLFLOW: &str = "http://127.0.0.1:5000";

/// Root's curl configuration with MLflow's admin user, written by the role mlflow_server.
const MLFLOW_ADMIN_CURLRC: &str = "/etc/mlflow/admin.curlrc";

/// Prometheus's targets API on the monitoring server.
const PROMETHEUS_TARGETS: &str = "http://127.0.0.1:9090/api/v1/targets";

/// The platform checks; returns one line per check for the summary.
pub fn check_platform(
    ctx: &Ctx<'_>,
    user: &str,
    config: &ClusterConfig,
    d: &Deployment,
    poll: Poll,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<Vec<String>, Error> {
    let mut verified = Vec::new();
    let cloud: Vec<&Host> = d.of_cluster("cloud").collect();
    if !cloud.is_empty() {
        verified.push(check_containerd(ctx, user, &cloud, out)?);
        verified.extend(super::kubernetes::check_kubernetes(
            ctx, user, d, poll, timeout, out,
        )?);
    }
    if config.clusters.cloud.is_some() {
        if let Some(pg) = d.postgres_host() {
            verified.push(check_postgres(ctx, user, pg, out)?);
            if config.mlflow_runtime() == Some(MlflowRuntime::Service) {
                verified.push(check_mlflow(ctx, user, pg, poll, timeout, out)?);
            }
        }
    }
    if config.monitoring_enabled() {
        if let Some(mon) = d.monitoring_server() {
            let expected: Vec<&Host> = d
                .hosts
                .iter()
                .filter(|h| config.clusters_routed() || h.cluster() == mon.cluster())
                .collect();
            verified.push(check_prometheus(
                ctx, user, mon, &expected, d, poll, timeout, out,
            )?);
        }
    }
    if config.segment_networks() {
        if let Some(line) = check_segmentation(ctx, user, config, d, out)? {
            verified.push(line);
        }
    }
    verified.push(check_sshd(ctx, user, config.ssh_password_auth(), d, out)?);
    Ok(verified)
}

/// `sudo ctr version` shows a server on every cloud VM.
fn check_containerd(
    ctx: &Ctx<'_>,
    user: &str,
    cloud: &[&Host],
    out: &mut dyn Write,
) -> Result<String, Error> {
    let mut versions = Vec::new();
    for h in cloud {
        let (ok, stdout, stderr) = ssh(ctx, user, h, &["sudo", "-n", "ctr", "version"])?;
        let server = stdout.split("Server:").nth(1);
        let version = server.and_then(|s| {
            s.lines()
                .find_map(|l| l.trim().strip_prefix("Version:"))
                .map(|v| v.trim().to_owned())
        });
        match (ok, version) {
            (true, Some(v)) => {
                say(out, format!("{}: containerd {v} answers ctr version", h.name));
                versions.push(v);
            }
            _ => {
                return Err(Error::invalid(format!(
                    "containerd does not answer on {} (`sudo ctr version`: {}); look at `journalctl -u \
                     containerd` there and run `hsw-cli up` again",
                    h.name,
                    said(&stdout, &stderr)
                )))
            }
        }
    }
    versions.dedup();
    Ok(format!(
        "containerd {} answers on {} cloud VM{}",
        versions.join(", "),
        cloud.len(),
        if cloud.len() == 1 { "" } else { "s" }
    ))
}

/// PostgreSQL takes a local (peer) connection as postgres and is ready on 127.0.0.1:5432.
fn check_postgres(
    ctx: &Ctx<'_>,
    user: &str,
    pg: &Host,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let (ok, stdout, stderr) = ssh(
        ctx,
        user,
        pg,
        &[
            "sudo",
            "-n",
            "-u",
            "postgres",
            "psql",
            "-XtAc",
            "'SELECT 1'",
        ],
    )?;
    if !ok || stdout.trim() != "1" {
        return Err(Error::invalid(format!(
            "PostgreSQL on {} takes no local connection (`psql -c 'SELECT 1'` as postgres: {}); look at \
             `journalctl -u postgresql@*` there",
            pg.name,
            said(&stdout, &stderr)
        )));
    }
    let (ok, stdout, _) = ssh(ctx, user, pg, &["pg_isready", "-h", "127.0.0.1"])?;
    if !ok {
        return Err(Error::invalid(format!(
            "PostgreSQL on {} does not accept TCP connections on 127.0.0.1 (pg_isready: {})",
            pg.name,
            first_line(&stdout)
        )));
    }
    say(
        out,
        format!(
            "{}: PostgreSQL takes connections (peer, and TCP on 127.0.0.1)",
            pg.name
        ),
    );
    Ok(format!("PostgreSQL on {} takes connections", pg.name))
}

/// MLflow's tracking server (runtime `service`) answers `/health` (asked until `timeout`: a restart takes a while
/// on a slow guest), refuses its API without credentials (401), and with the admin user's finds the `Default`
/// experiment, which lives in PostgreSQL. The admin's password stays on the guest (root's curl configuration).
fn check_mlflow(
    ctx: &Ctx<'_>,
    user: &str,
    host: &Host,
    poll: Poll,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let health = format!("{MLFLOW}/health");
    let t = Instant::now();
    loop {
        let (ok, stdout, stderr) = ssh(
            ctx,
            user,
            host,
            &["curl", "-fsS", "--max-time", "10", &health],
        )?;
        if ok && stdout.trim() == "OK" {
            break;
        }
        if t.elapsed() > timeout {
            return Err(Error::invalid(format!(
                "MLflow on {} does not answer {health} after {} s ({}); look at `journalctl -u mlflow` there",
                host.name,
                timeout.as_secs(),
                said(&stdout, &stderr)
            )));
        }
        std::thread::sleep(poll.every);
    }
    let api = format!("'{MLFLOW}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default'");
    let (_, code, _) = ssh(
        ctx,
        user,
        host,
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "'%{http_code}'",
            "--max-time",
            "10",
            &api,
        ],
    )?;
    if code.trim() != "401" {
        return Err(Error::invalid(format!(
            "MLflow on {} answered {} to its API without credentials, not 401: basic authentication is off; \
             look at /etc/mlflow/basic_auth.ini and the unit's --app-name there",
            host.name,
            code.trim()
        )));
    }
    let (ok, stdout, stderr) = ssh(
        ctx,
        user,
        host,
        &[
            "sudo",
            "-n",
            "curl",
            "-fsS",
            "--max-time",
            "30",
            "-K",
            MLFLOW_ADMIN_CURLRC,
            &api,
        ],
    )?;
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    if !ok || v["experiment"]["name"] != "Default" {
        return Err(Error::invalid(format!(
            "MLflow on {} does not give its admin user the Default experiment ({}); look at `journalctl -u \
             mlflow` there: its database is PostgreSQL's mlflow",
            host.name,
            said(&stdout, &stderr)
        )));
    }
    say(
        out,
        format!(
            "{}: MLflow answers /health, refuses its API without credentials and finds the Default experiment \
             for its admin",
            host.name
        ),
    );
    Ok(format!(
        "MLflow on {} answers, with basic authentication",
        host.name
    ))
}

/// Answers for a healthy MLflow service (for other steps' tests): /health, 401 without credentials, the
/// Default experiment for the admin.
#[cfg(test)]
pub fn answer_healthy_mlflow(runner: &crate::runner::fake::FakeRunner) {
    runner
        .on(&["curl", "http://127.0.0.1:5000/health"], 0, "OK")
        .on(&["-w", "'%{http_code}'"], 0, "401")
        .on(
            &["-K", MLFLOW_ADMIN_CURLRC],
            0,
            r#"{"experiment": {"experiment_id": "0", "name": "Default"}}"#,
        );
}

/// Prometheus's `node` job has every expected VM up (asked until `timeout`).
#[allow(clippy::too_many_arguments)]
fn check_prometheus(
    ctx: &Ctx<'_>,
    user: &str,
    mon: &Host,
    expected: &[&Host],
    d: &Deployment,
    poll: Poll,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let t = Instant::now();
    let mut last = String::new();
    loop {
        let (ok, stdout, _) = ssh(ctx, user, mon, &["curl", "-fsS", PROMETHEUS_TARGETS])?;
        let health = if ok {
            node_health(&stdout)
        } else {
            BTreeMap::new()
        };
        let missing: Vec<&str> = expected
            .iter()
            .filter(|h| health.get(h.name.as_str()).map(String::as_str) != Some("up"))
            .map(|h| h.name.as_str())
            .collect();
        let now = if ok {
            health
                .iter()
                .map(|(n, h)| format!("{n}={h}"))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            "no answer".to_owned()
        };
        if now != last {
            say(out, format!("Prometheus on {}: {now}", mon.name));
            last = now;
        }
        if missing.is_empty() {
            break;
        }
        if t.elapsed() > timeout {
            return Err(Error::invalid(format!(
                "Prometheus on {} does not see the node exporters of {} up after {} s (targets: {last}); look at \
                 {PROMETHEUS_TARGETS} there and at the node exporters",
                mon.name,
                missing.join(", "),
                timeout.as_secs()
            )));
        }
        std::thread::sleep(poll.every);
    }
    let unreachable = d.hosts.len() - expected.len();
    Ok(format!(
        "Prometheus on {} scrapes the node exporters of {} VMs{}",
        mon.name,
        expected.len(),
        if unreachable > 0 {
            format!(
                " ({unreachable} of the other cluster not: the networks do not route between the clusters)"
            )
        } else {
            String::new()
        }
    ))
}

/// `node -> health` of the `node` job in Prometheus's targets answer (empty when it is not that).
fn node_health(answer: &str) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(answer).unwrap_or_default();
    let mut out = BTreeMap::new();
    for t in v["data"]["activeTargets"].as_array().into_iter().flatten() {
        if t["labels"]["job"] != "node" {
            continue;
        }
        if let (Some(n), Some(h)) = (t["labels"]["node"].as_str(), t["health"].as_str()) {
            out.insert(n.to_owned(), h.to_owned());
        }
    }
    out
}

/// Whether `from` opens a TCP connection to `to:port` within 5 s.
fn connects(ctx: &Ctx<'_>, user: &str, from: &Host, to: &Host, port: u16) -> Result<bool, Error> {
    let probe = format!("'exec 3<>/dev/tcp/{}/{port}'", to.ip);
    let (ok, _, _) = ssh(ctx, user, from, &["timeout", "5", "bash", "-c", &probe])?;
    Ok(ok)
}

/// An HPC VM reaches no cloud VM (SSH, node exporter); where the networks route, the monitoring server
/// scrapes an HPC VM's node exporter and another cloud VM may not. `None` when a cluster has no VM.
fn check_segmentation(
    ctx: &Ctx<'_>,
    user: &str,
    config: &ClusterConfig,
    d: &Deployment,
    out: &mut dyn Write,
) -> Result<Option<String>, Error> {
    let Some(hpc) = d
        .with_role(Role::Compute)
        .next()
        .or_else(|| d.of_cluster("hpc").next())
    else {
        return Ok(None);
    };
    let mon = d.monitoring_server();
    let others: Vec<&Host> = d
        .of_cluster("cloud")
        .filter(|h| Some(h.name.as_str()) != mon.map(|m| m.name.as_str()))
        .collect();
    let Some(cloud) = others
        .first()
        .copied()
        .or_else(|| d.of_cluster("cloud").next())
    else {
        return Ok(None);
    };
    for port in [22, NODE_EXPORTER_PORT, KUBELET_PORT] {
        if connects(ctx, user, hpc, cloud, port)? {
            return Err(Error::invalid(format!(
                "{} (HPC) reaches {}:{port} (cloud), which the segmentation policy forbids; look at `nft list \
                 table inet hsw_segmentation` on {}",
                hpc.name, cloud.name, cloud.name
            )));
        }
        say(
            out,
            format!("{} -> {}:{port}: refused", hpc.name, cloud.name),
        );
    }
    let mut line = format!(
        "segmentation: {} (HPC) cannot reach {} (cloud) on 22, {NODE_EXPORTER_PORT} or {KUBELET_PORT}",
        hpc.name, cloud.name
    );
    if !config.clusters_routed() {
        line.push_str(" (the networks do not route between the clusters either)");
        return Ok(Some(line));
    }
    if let Some(m) = mon.filter(|m| m.cluster() == "cloud" && config.monitoring_enabled()) {
        if !connects(ctx, user, m, hpc, NODE_EXPORTER_PORT)? {
            return Err(Error::invalid(format!(
                "the monitoring server {} cannot reach {}:{NODE_EXPORTER_PORT}, which the policy allows; look at \
                 `nft list table inet hsw_segmentation` on {}",
                m.name, hpc.name, hpc.name
            )));
        }
        say(
            out,
            format!(
                "{} (monitoring) -> {}:{NODE_EXPORTER_PORT}: connects",
                m.name, hpc.name
            ),
        );
        line.push_str(&format!(
            "; the monitoring server {} scrapes across",
            m.name
        ));
        if let Some(o) = others.first() {
            if connects(ctx, user, o, hpc, NODE_EXPORTER_PORT)? {
                return Err(Error::invalid(format!(
                    "{} reaches {}:{NODE_EXPORTER_PORT} although only the monitoring server may",
                    o.name, hpc.name
                )));
            }
            say(
                out,
                format!("{} -> {}:{NODE_EXPORTER_PORT}: refused", o.name, hpc.name),
            );
            line.push_str(&format!(", {} may not", o.name));
        }
    }
    Ok(Some(line))
}

/// `sshd -T` on every VM says password logins are as cluster.yaml sets them (off by default).
fn check_sshd(
    ctx: &Ctx<'_>,
    user: &str,
    password_auth: bool,
    d: &Deployment,
    out: &mut dyn Write,
) -> Result<String, Error> {
    let want = if password_auth { "yes" } else { "no" };
    for h in &d.hosts {
        let (ok, stdout, stderr) = ssh(ctx, user, h, &["sudo", "-n", "sshd", "-T"])?;
        let got = stdout
            .lines()
            .find_map(|l| l.strip_prefix("passwordauthentication "))
            .map(str::trim);
        if !ok || got != Some(want) {
            return Err(Error::invalid(format!(
                "sshd on {} says passwordauthentication {} (expected {want}, global.security.ssh_password_auth){}",
                h.name,
                got.unwrap_or("?"),
                if ok { String::new() } else { format!(": {}", first_line(&stderr)) }
            )));
        }
    }
    say(
        out,
        format!(
            "sshd -T: passwordauthentication {want} on all {} VMs",
            d.hosts.len()
        ),
    );
    Ok(format!(
        "sshd takes {} on all {} VMs",
        if password_auth {
            "passwords and keys"
        } else {
            "keys only"
        },
        d.hosts.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::{fixture, text, Fixture};

    const POLL: Poll = Poll {
        every: Duration::from_millis(1),
        ssh_deadline: Duration::from_millis(50),
    };

    /// The checks with the test's timings, as the login user `hsw`.
    fn check(
        ctx: &Ctx<'_>,
        session: &crate::session::Session,
        d: &Deployment,
        out: &mut dyn Write,
    ) -> Result<Vec<String>, Error> {
        check_platform(
            ctx,
            "hsw",
            &session.config,
            d,
            POLL,
            Duration::from_millis(20),
            out,
        )
    }

    fn targets(up: &[&str], down: &[&str]) -> String {
        let t: Vec<serde_json::Value> = up
            .iter()
            .map(|n| (n, "up"))
            .chain(down.iter().map(|n| (n, "down")))
            .map(|(n, h)| serde_json::json!({"labels": {"job": "node", "node": n}, "health": h}))
            .chain(std::iter::once(
                serde_json::json!({"labels": {"job": "prometheus"}, "health": "down"}),
            ))
            .collect();
        serde_json::json!({"status": "success", "data": {"activeTargets": t}}).to_string()
    }

    #[test]
    fn node_health_reads_the_node_job_only() {
        let h = node_health(&targets(&["a"], &["b"]));
        assert_eq!(h.len(), 2);
        assert_eq!(h["a"], "up");
        assert_eq!(h["b"], "down");
        assert!(node_health("not json").is_empty());
        assert!(node_health("{\"data\": 3}").is_empty());
    }

    /// The answers of healthy guests; `probe_ok` says which `from -> to:port` probes connect.
    fn healthy(runner: &FakeRunner, d: &Deployment, probe_ok: &[(&Host, &Host, u16)]) {
        let names: Vec<&str> = d.hosts.iter().map(|h| h.name.as_str()).collect();
        // The first rule that matches answers: the probes that connect before the ones refused.
        for (from, to, port) in probe_ok {
            runner.on(
                &[
                    &format!("hsw@{}", from.ip),
                    &format!("'exec 3<>/dev/tcp/{}/{port}'", to.ip),
                ],
                0,
                "",
            );
        }
        runner
            .on(
                &["ctr", "version"],
                0,
                "Client:\n  Version:  1.6.20\n\nServer:\n  Version:  1.6.20~ds1\n",
            )
            .on(&["psql"], 0, "1\n")
            .on(
                &["pg_isready"],
                0,
                "127.0.0.1:5432 - accepting connections\n",
            )
            .on(&["curl", PROMETHEUS_TARGETS], 0, &targets(&names, &[]))
            .on(&["sshd", "-T"], 0, "port 22\npasswordauthentication no\n")
            .on(&["timeout", "5"], 1, "");
        super::super::kubernetes::answer_healthy(runner, d);
        super::answer_healthy_mlflow(runner);
    }

    #[test]
    fn healthy_guests_give_one_line_per_check() {
        let f = Fixture::new(Some("sb"));
        let session = fixture::session();
        let probe = FakeRunner::new();
        let d = fixture::loaded(&session, &f.ctx(&probe)).deployment;
        let runner = FakeRunner::new();
        healthy(&runner, &d, &[]);
        let ctx = f.ctx(&runner);
        let mut out = Vec::new();
        let lines =
            check(&ctx, &session, &d, &mut out).unwrap_or_else(|e| panic!("{e}\n{}", text(&out)));
        let cp = d.with_role(Role::ControlPlane).next().unwrap();
        let n = d.hosts.len();
        let n_cloud = d.of_cluster("cloud").count();
        // The default's networks are isolated: Prometheus reaches its own cluster only.
        assert!(!session.config.clusters_routed());
        let gw = d.with_role(Role::GpuWorker).next().unwrap();
        let k8s = crate::up::verify::kubernetes::tests::healthy_lines(
            &[&cp.name, &gw.name],
            &cp.name,
            &gw.name,
        );
        assert_eq!(
            lines,
            [
                format!("containerd 1.6.20~ds1 answers on {n_cloud} cloud VMs"),
                k8s[0].clone(),
                k8s[1].clone(),
                k8s[2].clone(),
                format!("PostgreSQL on {} takes connections", cp.name),
                format!("MLflow on {} answers, with basic authentication", cp.name),
                format!(
                    "Prometheus on {} scrapes the node exporters of {n_cloud} VMs ({} of the other cluster not: the \
                     networks do not route between the clusters)",
                    cp.name,
                    n - n_cloud
                ),
                lines[7].clone(),
                format!("sshd takes keys only on all {n} VMs"),
            ]
        );
        assert!(
            lines[7].starts_with("segmentation: ")
                && lines[7].ends_with("(the networks do not route between the clusters either)"),
            "{}",
            lines[7]
        );
        // MLflow's admin password never reaches a command line: root's curl configuration on the guest holds it.
        let mlflow: Vec<Vec<String>> = runner
            .argvs()
            .into_iter()
            .filter(|a| a.iter().any(|x| x.contains(":5000/")))
            .collect();
        assert_eq!(mlflow.len(), 3, "{mlflow:?}");
        assert!(
            mlflow.iter().all(|a| !a
                .iter()
                .any(|x| x.starts_with("-u") || x.contains('@') && x.contains(":5000"))),
            "{mlflow:?}"
        );
        // Probes only from the HPC VM, to the cloud worker (not the monitoring server), on 22, 9100 and 10250.
        let probes: Vec<String> = runner
            .argvs()
            .into_iter()
            .filter_map(|a| a.last().filter(|l| l.contains("/dev/tcp/")).cloned())
            .collect();
        assert_eq!(
            probes,
            [
                format!("'exec 3<>/dev/tcp/{}/22'", gw.ip),
                format!("'exec 3<>/dev/tcp/{}/9100'", gw.ip),
                format!("'exec 3<>/dev/tcp/{}/10250'", gw.ip)
            ]
        );
    }

    #[test]
    fn routed_networks_check_the_monitoring_exception_both_ways() {
        let f = Fixture::new(Some("sb"));
        let session = crate::session::testing::edited_session(&[
            (
                "      bridge: hswbr-hpc",
                "      bridge: hswbr-hpc\n      mode: route",
            ),
            (
                "      bridge: hswbr-cloud",
                "      bridge: hswbr-cloud\n      mode: route",
            ),
        ]);
        assert!(session.config.clusters_routed());
        let probe = FakeRunner::new();
        let d = fixture::loaded(&session, &f.ctx(&probe)).deployment;
        let cp = d.with_role(Role::ControlPlane).next().unwrap();
        let gw = d.with_role(Role::GpuWorker).next().unwrap();
        let c1 = d.with_role(Role::Compute).next().unwrap();
        for (allowed, worker_too, want) in [
            (true, false, Ok(())),
            (false, false, Err("the monitoring server ")),
            (true, true, Err(" although only the monitoring server may")),
        ] {
            let runner = FakeRunner::new();
            let mut ok = Vec::new();
            if allowed {
                ok.push((cp, c1, NODE_EXPORTER_PORT));
            }
            if worker_too {
                ok.push((gw, c1, NODE_EXPORTER_PORT));
            }
            healthy(&runner, &d, &ok);
            let ctx = f.ctx(&runner);
            let r = check(&ctx, &session, &d, &mut Vec::new());
            match (r, want) {
                (Ok(lines), Ok(())) => {
                    assert!(
                        lines[6].ends_with(&format!("of {} VMs", d.hosts.len())),
                        "{lines:?}"
                    );
                    assert!(
                        lines[7].ends_with(&format!(
                            "; the monitoring server {} scrapes across, {} may not",
                            cp.name, gw.name
                        )),
                        "{lines:?}"
                    );
                }
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (r, w) => panic!("{r:?} but expected {w:?}"),
            }
        }
    }

    #[test]
    fn what_is_wrong_is_named_with_where_to_look() {
        let f = Fixture::new(Some("sb"));
        let session = fixture::session();
        let probe = FakeRunner::new();
        let d = fixture::loaded(&session, &f.ctx(&probe)).deployment;
        let gw = d.with_role(Role::GpuWorker).next().unwrap();
        let c1 = d.with_role(Role::Compute).next().unwrap();
        let cases: [(&[&str], i32, &str, &str); 8] = [
            (&["ctr", "version"], 1, "", "containerd does not answer on "),
            (&["psql"], 2, "", "takes no local connection"),
            (
                &["curl", "http://127.0.0.1:5000/health"],
                7,
                "",
                "MLflow on hsw-dev-control-plane-1 does not answer http://127.0.0.1:5000/health after 0 s",
            ),
            (
                &["-w", "'%{http_code}'"],
                0,
                "200",
                "answered 200 to its API without credentials, not 401",
            ),
            (
                &["-K", MLFLOW_ADMIN_CURLRC],
                22,
                "",
                "does not give its admin user the Default experiment",
            ),
            (
                &["curl", PROMETHEUS_TARGETS],
                0,
                "{}",
                "does not see the node exporters of ",
            ),
            (
                &["sshd", "-T"],
                0,
                "passwordauthentication yes\n",
                "says passwordauthentication yes (expected no",
            ),
            (
                &["timeout", "5"],
                0,
                "",
                "which the segmentation policy forbids",
            ),
        ];
        for (needles, code, answer, want) in cases {
            let runner = FakeRunner::new();
            // The first rule that matches answers: the broken one goes first.
            runner.on(needles, code, answer);
            healthy(&runner, &d, &[]);
            let ctx = f.ctx(&runner);
            let e = check(&ctx, &session, &d, &mut Vec::new()).unwrap_err();
            assert!(e.to_string().contains(want), "{needles:?}: {e}");
            if needles == ["timeout", "5"] {
                assert!(
                    e.to_string()
                        .starts_with(&format!("{} (HPC) reaches {}:22", c1.name, gw.name)),
                    "{e}"
                );
            }
        }
    }
}
