//! `hsw-cli status` over the fake runner.

use super::*;
use crate::runner::fake::FakeRunner;
use crate::up::testing::{fixture, Fixture};

/// A runner that answers `overrides` first; otherwise the sandbox runs, every planned VM runs with its
/// address, every compute node is idle and every promised service is active.
fn runner(
    f: &Fixture,
    d: &Deployment,
    s: &Session,
    overrides: &[(&[&str], i32, &str)],
) -> FakeRunner {
    runner_with(f, d, s, |r| {
        for (needles, code, stdout) in overrides {
            r.on(needles, *code, stdout);
        }
    })
}

/// [`runner`] with the first rules added by `first`.
fn runner_with(
    f: &Fixture,
    d: &Deployment,
    s: &Session,
    first: impl FnOnce(&FakeRunner),
) -> FakeRunner {
    let r = FakeRunner::new();
    first(&r);
    r.on(
        &["env"],
        0,
        &fixture::sandbox_env(&f.dir.path().join("sandbox")),
    );
    let names: Vec<&str> = d.hosts.iter().map(|h| h.name.as_str()).collect();
    r.on(&["virsh", "list", "--name"], 0, &fixture::lines(&names, ""));
    for h in &d.hosts {
        r.on(
            &["domifaddr", &h.name],
            0,
            &format!(" vnet0  52:54:00:aa:bb:cc  ipv4  {}/24\n", h.ip),
        );
    }
    r.on(
        &["sinfo"],
        0,
        &fixture::lines(&fixture::computes(d), " idle"),
    );
    let cloud: Vec<(&str, bool)> = d
        .of_cluster("cloud")
        .map(|h| (h.name.as_str(), true))
        .collect();
    r.on(
        &["get", "nodes"],
        0,
        &crate::up::verify::kubernetes::tests::nodes(&cloud),
    );
    // The answers of a configured platform; without it fewer units are asked and the extra lines unread.
    for (vm, units) in promised_services(&s.config, d, true) {
        let ip = d.hosts.iter().find(|h| h.name == vm).unwrap().ip;
        let active = vec!["active"; units.len()].join("\n");
        r.on(
            &[&format!("hsw@{ip}"), "is-active"],
            0,
            &format!("{active}\n"),
        );
    }
    r
}

/// The default deployment after `up` configured the platform (its variables are in the state directory).
fn setup() -> (Fixture, Session, Deployment) {
    let (f, session, d) = setup_hpc_only();
    let vars = f.ctx(&FakeRunner::new()).state.extra_vars("platform");
    std::fs::create_dir_all(vars.parent().unwrap()).unwrap();
    std::fs::write(&vars, "{}\n").unwrap();
    (f, session, d)
}

/// The default deployment after `up --hpc-only`: the platform was never configured.
fn setup_hpc_only() -> (Fixture, Session, Deployment) {
    let f = Fixture::new(Some("sb"));
    let session = fixture::session();
    let d = planned_hosts(&session.config, session.plan().unwrap());
    (f, session, d)
}

fn run_status(r: &FakeRunner, f: &Fixture, s: &Session, format: Format) -> (Status, u8, String) {
    let ctx = f.ctx(r);
    let st = gather(&ctx, s).unwrap();
    let mut out = Vec::new();
    let code = report(&st, format, &mut out);
    (st, code, String::from_utf8(out).unwrap())
}

#[test]
fn all_up() {
    let (f, s, d) = setup();
    let r = runner(&f, &d, &s, &[]);
    let (st, code, out) = run_status(&r, &f, &s, Format::Text);
    assert_eq!(code, exit::OK, "{out}");
    assert!(st.down.is_empty(), "{:?}", st.down);
    assert_eq!(st.vms.len(), d.hosts.len());
    assert!(st
        .vms
        .iter()
        .all(|v| v.state == "running" && v.address.as_deref() == Some(v.ip.as_str())));
    assert!(
        out.ends_with("hsw: everything cluster.yaml promises is up\n"),
        "{out}"
    );
    let ctl = d.with_role(Role::Controller).next().unwrap();
    assert!(
        out.contains(&format!(
            "  {}: munge active, mariadb active, slurmdbd active, slurmctld active, nfs-server active,",
            ctl.name
        )),
        "{out}"
    );
    // A GPU unit is shown on its VM.
    let gpu = d.hosts.iter().find(|h| !h.gpu_units.is_empty()).unwrap();
    let line = out.lines().find(|l| l.starts_with(&gpu.name)).unwrap();
    let layout = Layout::new(&s.config, s.plan().unwrap());
    let unit = &layout
        .vms
        .iter()
        .find(|v| v.name == gpu.name)
        .unwrap()
        .gpu_units[0];
    let want = format!(
        "{} ({}, simulated)",
        unit.id(),
        unit.profile.as_deref().unwrap()
    );
    assert!(line.ends_with(&want), "{line} does not end with {want}");
    // libvirt is the sandbox's, reached directly; SSH goes through the sandbox.
    let argvs = r.argvs();
    let sock = format!(
        "qemu+unix:///system?socket={}/sandbox/run/sock",
        f.dir.path().display()
    );
    assert!(
        argvs
            .iter()
            .any(|a| a[..4] == ["virsh", "-q", "-c", sock.as_str()]),
        "{argvs:?}"
    );
    let ssh: Vec<_> = argvs
        .iter()
        .filter(|a| a.contains(&"ssh".to_owned()))
        .collect();
    assert!(ssh.iter().all(|a| a[4..6] == ["exec", "--"]), "{ssh:?}");
    assert_eq!(
        ssh.len(),
        d.hosts.len() + 2,
        "one sinfo, one kubectl and one systemctl per VM"
    );
    let cp = d.with_role(Role::ControlPlane).next().unwrap();
    assert!(
        out.contains(&format!("\nKubernetes nodes:\n  {} Ready\n", cp.name)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "  {}: containerd active, kubelet active,",
            cp.name
        )),
        "{out}"
    );
    assert!(st
        .kubernetes
        .as_ref()
        .unwrap()
        .iter()
        .all(|n| n.up && n.state == "Ready"));
    let ctl_ssh = format!("hsw@{}", ctl.ip);
    let is_active = ssh
        .iter()
        .find(|a| a.contains(&ctl_ssh) && a.contains(&"is-active".to_owned()))
        .unwrap();
    assert!(
        is_active.ends_with(
            &[
                "--",
                "systemctl",
                "is-active",
                "munge",
                "mariadb",
                "slurmdbd",
                "slurmctld",
                "nfs-server",
                "prometheus-node-exporter"
            ]
            .map(String::from)
        ),
        "{is_active:?}"
    );
}

#[test]
fn a_vm_shut_off_is_down() {
    let (f, s, d) = setup();
    let off = d.with_role(Role::Compute).next().unwrap();
    let others: Vec<&str> = d
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .filter(|n| *n != off.name)
        .collect();
    let listing = fixture::lines(&others, "");
    let r = runner(
        &f,
        &d,
        &s,
        &[
            (&["virsh", "list", "--name"], 0, &listing),
            (&["domuuid", &off.name], 0, "1234\n"),
        ],
    );
    let (st, code, out) = run_status(&r, &f, &s, Format::Text);
    assert_eq!(code, exit::INVALID, "{out}");
    let v = st.vms.iter().find(|v| v.name == off.name).unwrap();
    assert_eq!((v.state.as_str(), v.up), ("shut off", false));
    assert!(
        out.contains(&format!("down: VM {} is shut off", off.name)),
        "{out}"
    );
    assert!(
        out.ends_with(
            "hsw: the cause and fix of each: docs/troubleshooting.md#what-hsw-cli-status-reports-down\n"
        ),
        "{out}"
    );
    // Its services are not asked for (nothing answers on a VM that is off), and not counted twice.
    assert!(!r
        .argvs()
        .iter()
        .any(|a| a.contains(&format!("hsw@{}", off.ip))));
    assert!(st
        .services
        .iter()
        .filter(|x| x.vm == off.name)
        .all(|x| x.state == "unknown"));
    assert!(!out.contains(&format!("munge on {}", off.name)), "{out}");
}

#[test]
fn a_vm_libvirt_does_not_know_is_not_defined() {
    let (f, s, d) = setup();
    let gone = &d.hosts[0];
    let others: Vec<&str> = d.hosts.iter().skip(1).map(|h| h.name.as_str()).collect();
    let r = runner(
        &f,
        &d,
        &s,
        &[
            (
                &["virsh", "list", "--name"],
                0,
                &fixture::lines(&others, ""),
            ),
            (&["domuuid"], 1, ""),
        ],
    );
    let (_, code, out) = run_status(&r, &f, &s, Format::Text);
    assert_eq!(code, exit::INVALID);
    assert!(
        out.contains(&format!("down: VM {} is not defined", gone.name)),
        "{out}"
    );
}

#[test]
fn a_slurm_node_down_is_down() {
    let (f, s, d) = setup();
    let computes = fixture::computes(&d);
    let sinfo = format!("{} idle\n{} down*\n", computes[0], computes[1]);
    let r = runner(&f, &d, &s, &[(&["sinfo"], 0, &sinfo)]);
    let (st, code, out) = run_status(&r, &f, &s, Format::Text);
    assert_eq!(code, exit::INVALID, "{out}");
    let nodes = st.slurm.unwrap();
    assert!(nodes[0].up);
    assert_eq!((nodes[1].state.as_str(), nodes[1].up), ("down*", false));
    assert!(
        out.contains(&format!("down: Slurm node {} is down*", computes[1])),
        "{out}"
    );
    assert!(
        out.contains(&format!("  {} down* (DOWN)", computes[1])),
        "{out}"
    );
    // A node sinfo does not list is missing; a responding node in drain is down too.
    let r = runner(
        &f,
        &d,
        &s,
        &[(&["sinfo"], 0, &format!("{} drain\n", computes[0]))],
    );
    let (st, _, _) = run_status(&r, &f, &s, Format::Text);
    let nodes = st.slurm.unwrap();
    assert_eq!((nodes[0].state.as_str(), nodes[0].up), ("drain", false));
    assert_eq!((nodes[1].state.as_str(), nodes[1].up), ("missing", false));
}

#[test]
fn a_service_down_is_down() {
    let (f, s, d) = setup();
    let cp = d.with_role(Role::ControlPlane).next().unwrap();
    let units = &promised_services(&s.config, &d, true)[&cp.name];
    let i = units.iter().position(|u| *u == "prometheus").unwrap();
    let answer: Vec<&str> = (0..units.len())
        .map(|j| if j == i { "failed" } else { "active" })
        .collect();
    let r = runner(
        &f,
        &d,
        &s,
        &[(
            &[&format!("hsw@{}", cp.ip), "is-active"],
            3,
            &format!("{}\n", answer.join("\n")),
        )],
    );
    let (st, code, out) = run_status(&r, &f, &s, Format::Text);
    assert_eq!(code, exit::INVALID, "{out}");
    assert_eq!(st.down, [format!("prometheus on {} is failed", cp.name)]);
    assert!(out.contains("prometheus failed (DOWN)"), "{out}");
}

#[test]
fn a_vm_that_does_not_answer_ssh_is_one_line() {
    let (f, s, d) = setup();
    let ctl = d.with_role(Role::Controller).next().unwrap();
    let r = runner_with(&f, &d, &s, |r| {
        r.on_full(
            &[&format!("hsw@{}", ctl.ip)],
            Some(255),
            "",
            "ssh: connect to host: Connection refused\n",
            None,
        );
    });
    let (st, code, out) = run_status(&r, &f, &s, Format::Text);
    assert_eq!(code, exit::INVALID, "{out}");
    assert_eq!(
        st.down,
        [
            format!("`sinfo -h` over SSH on {} failed: ssh: connect to host: Connection refused", ctl.name),
            format!("`systemctl is-active` over SSH on {} failed: ssh: connect to host: Connection refused", ctl.name),
        ]
    );
    assert!(st.slurm.unwrap().iter().all(|n| n.state == "unknown"));
}

#[test]
fn promised_services_follow_the_playbooks() {
    let (_, s, d) = setup();
    let p = promised_services(&s.config, &d, true);
    let ctl = d.with_role(Role::Controller).next().unwrap();
    let compute = d.with_role(Role::Compute).next().unwrap();
    let cp = d.with_role(Role::ControlPlane).next().unwrap();
    assert_eq!(
        p[&ctl.name],
        [
            "munge",
            "mariadb",
            "slurmdbd",
            "slurmctld",
            "nfs-server",
            "prometheus-node-exporter"
        ]
    );
    assert_eq!(
        p[&compute.name],
        ["munge", "slurmd", "prometheus-node-exporter"]
    );
    // The default has no CPU worker: PostgreSQL, MLflow beside it, and Prometheus are on the control plane.
    assert_eq!(
        p[&cp.name],
        [
            "containerd",
            "kubelet",
            "postgresql",
            "mlflow",
            "prometheus-node-exporter",
            "prometheus"
        ]
    );
    // MLflow elsewhere (kubernetes) or not at all is not promised; nor before the platform runs.
    for runtime in ["kubernetes", "none"] {
        let other = crate::session::testing::edited_session(&[(
            "    kubernetes_config:\n",
            &format!("    mlflow:\n      runtime: {runtime}\n    kubernetes_config:\n"),
        )]);
        assert_eq!(
            other.config.mlflow_runtime().map(|r| r.as_str()),
            Some(runtime)
        );
        let dr = planned_hosts(&other.config, other.plan().unwrap());
        assert!(promised_services(&other.config, &dr, true)
            .values()
            .all(|u| !u.contains(&"mlflow")));
    }
    assert!(!promised_services(&s.config, &d, false)[&cp.name].contains(&"mlflow"));
    let quiet = crate::session::testing::edited_session(&[(
        "monitoring:\n    enabled: true",
        "monitoring:\n    enabled: false",
    )]);
    let dq = planned_hosts(&quiet.config, quiet.plan().unwrap());
    assert!(promised_services(&quiet.config, &dq, true)
        .values()
        .all(|u| !u.contains(&"prometheus-node-exporter")));
}

#[test]
fn json_shape() {
    let (f, s, d) = setup();
    let r = runner(&f, &d, &s, &[]);
    let (_, code, out) = run_status(&r, &f, &s, Format::Json);
    assert_eq!(code, exit::OK);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "config",
            "sandbox",
            "vms",
            "slurm",
            "kubernetes",
            "services",
            "down"
        ]
    );
    assert_eq!(v["sandbox"], "sb");
    let vm = &v["vms"][0];
    let keys: Vec<&str> = vm.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "name",
            "cluster",
            "role",
            "state",
            "ip",
            "address",
            "gpu_units",
            "up"
        ]
    );
    assert_eq!(vm["name"], d.hosts[0].name);
    assert_eq!(vm["state"], "running");
    assert_eq!(v["slurm"][0]["state"], "idle");
    assert_eq!(v["kubernetes"][0]["state"], "Ready");
    let gpu = v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["gpu_units"].as_array().is_some_and(|u| !u.is_empty()))
        .unwrap();
    let unit = &gpu["gpu_units"][0];
    assert!(
        unit["id"].as_str().unwrap().starts_with("GPU-0-mig-"),
        "{unit}"
    );
    assert_eq!(unit["attach"], "simulated");
    assert!(unit["profile"].is_string(), "{unit}");
    assert_eq!(v["services"][0]["state"], "active");
    assert_eq!(v["down"], serde_json::json!([]));
}

#[test]
fn a_stopped_sandbox_is_down_and_nothing_is_asked() {
    let (f, s, _) = setup();
    let r = FakeRunner::new();
    r.on(&["status"], 1, "");
    let (st, code, out) = run_status(&r, &f, &s, Format::Text);
    assert_eq!(code, exit::INVALID);
    assert_eq!(
        st.down,
        ["the sandbox `sb` is not running: start it with `hsw-cli up --sandbox-name sb`"]
    );
    assert!(st.vms.iter().all(|v| v.state == "unknown"));
    assert!(
        out.contains("down: the sandbox `sb` is not running"),
        "{out}"
    );
    assert_eq!(
        r.argvs().len(),
        1,
        "only sandbox.sh status: {:?}",
        r.argvs()
    );
}

#[test]
fn a_kubernetes_node_not_ready_or_missing_is_down() {
    let (f, s, d) = setup();
    let cloud: Vec<&Host> = d.of_cluster("cloud").collect();
    let (cp, gw) = (cloud[0], cloud[1]);
    // The control plane NotReady, the GPU worker never joined.
    let answer = crate::up::verify::kubernetes::tests::nodes(&[(cp.name.as_str(), false)]);
    let r = runner(&f, &d, &s, &[(&["get", "nodes"], 0, &answer)]);
    let (st, code, out) = run_status(&r, &f, &s, Format::Text);
    assert_eq!(code, exit::INVALID, "{out}");
    assert_eq!(
        st.down,
        [
            format!("Kubernetes node {} is NotReady", cp.name),
            format!("Kubernetes node {} is missing", gw.name),
        ]
    );
    assert!(
        out.contains(&format!("  {} NotReady (DOWN)\n", cp.name)),
        "{out}"
    );
}

#[test]
fn without_the_platform_kubernetes_is_not_promised() {
    let (f, s, d) = setup_hpc_only();
    let r = runner(&f, &d, &s, &[]);
    let (st, code, out) = run_status(&r, &f, &s, Format::Text);
    assert_eq!(code, exit::OK, "{out}");
    assert_eq!(st.kubernetes, None);
    assert!(!out.contains("Kubernetes nodes:"), "{out}");
    assert!(!out.contains("kubelet"), "{out}");
    assert!(
        r.argvs().iter().all(|a| !a.contains(&"kubectl".to_owned())),
        "kubectl was asked: {:?}",
        r.argvs()
    );
    let p = promised_services(&s.config, &d, false);
    assert!(p.values().all(|u| !u.contains(&"kubelet")), "{p:?}");
}
