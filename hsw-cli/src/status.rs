//! `hsw-cli status`: what runs of what cluster.yaml promises, from the same places `up` uses (its sandbox, its
//! state directory's SSH keys):
//!
//! - every VM of the planned layout with its cluster, role, libvirt state (`virsh`, through `up::virsh::Virsh`:
//!   running, shut off, or not defined), its address as libvirt sees it, and its GPU units;
//! - the Slurm nodes' states (`sinfo` over SSH on the controller);
//! - once the platform was configured (`up` without `--hpc-only`, or `hsw-cli ansible platform`: the state
//!   directory holds `ansible/platform-vars.json`), every cloud VM's Kubernetes node state (`kubectl get nodes`
//!   over SSH on the control plane);
//! - each service the playbooks start ([`promised_services`]), `systemctl is-active` over SSH, one call per VM.
//!
//! SSH runs inside the sandbox (`up::verify::ssh`), `virsh` against its libvirtd socket. Exit 0 when all is up,
//! 1 when something promised is down (each named in a `down:` line), 2 when it cannot look (no `virsh`, no
//! `ssh`, a sandbox that does not say where its libvirt is).

use std::collections::BTreeMap;
use std::io::Write;

use clap::Args;
use hsw_core::ansible::hosts::{planned_hosts, Deployment, Host};
use hsw_core::config::model::MlflowRuntime;
use hsw_core::config::ClusterConfig;
use hsw_core::layout::{Layout, Role};
use serde::Serialize;

use crate::error::Error;
use crate::runner::SystemRunner;
use crate::session::Session;
use crate::up::verify::kubernetes::{ready_nodes, GET_NODES};
use crate::up::virsh::Virsh;
use crate::up::{sandbox, ssh_user, verify, Ctx, Target};
use crate::{exit, Format};

/// `hsw-cli status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// The Slurm node states that mean a node takes jobs (`sinfo %t`; a trailing `*` means not responding).
const SLURM_UP: [&str; 6] = ["idle", "alloc", "mix", "comp", "resv", "plnd"];

/// One VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmStatus {
    pub name: String,
    pub cluster: &'static str,
    pub role: &'static str,
    /// `running`, `shut off` (defined, not running), `not defined`, or `unknown` (libvirt did not answer).
    pub state: String,
    /// The planned static address.
    pub ip: String,
    /// The address libvirt reports (running VMs with a lease).
    pub address: Option<String>,
    /// The GPU units the plan gives it.
    pub gpu_units: Vec<UnitStatus>,
    pub up: bool,
}

/// One GPU unit of a VM, from the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    /// The unit id (`GPU-0-mig-0`).
    pub id: String,
    /// The MIG profile (`None` for a whole GPU).
    pub profile: Option<String>,
    /// How it reaches the VM: `vgpu`, `passthrough` or `simulated`.
    pub attach: Option<&'static str>,
}

impl std::fmt::Display for UnitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let about: Vec<&str> = self
            .profile
            .as_deref()
            .into_iter()
            .chain(self.attach)
            .collect();
        if about.is_empty() {
            f.write_str(&self.id)
        } else {
            write!(f, "{} ({})", self.id, about.join(", "))
        }
    }
}

/// One Slurm node (as `sinfo` on the controller reports it) or Kubernetes node (`kubectl get nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    /// `sinfo`'s short state, or `Ready` / `NotReady`; `missing` when it does not list the node, `unknown`
    /// when it could not be asked.
    pub state: String,
    pub up: bool,
}

/// One service on one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub vm: String,
    pub service: &'static str,
    /// `systemctl is-active`'s answer, or `unknown` when the VM could not be asked.
    pub state: String,
    pub up: bool,
}

/// Everything `status` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub config: String,
    pub sandbox: Option<String>,
    pub vms: Vec<VmStatus>,
    /// `None` when the config has no HPC cluster.
    pub slurm: Option<Vec<NodeStatus>>,
    /// Every cloud VM as a Kubernetes node; `None` when the cloud cluster has no control plane or the platform
    /// was not configured.
    pub kubernetes: Option<Vec<NodeStatus>>,
    pub services: Vec<ServiceStatus>,
    /// One sentence per thing promised and down.
    pub down: Vec<String>,
}

/// The services the playbooks start on each VM, in order: Munge and `slurmctld` / `slurmd` on the HPC cluster
/// (`playbook-hpc.yml`), containerd on the cloud cluster (`playbook-k8s.yml`, offline part) and, once the
/// platform was configured (`platform`), the kubelet there (kubeadm init and join), PostgreSQL on
/// `mlops_postgres_host` (the first CPU worker, else the control plane: `playbook-mlops.yml`) and, once the
/// platform was configured and with `clusters.cloud.mlflow.runtime: service`, MLflow beside it; and with
/// `global.monitoring.enabled` (default true) the node exporter everywhere and Prometheus on
/// `monitoring_server` (the control plane, else the Slurm controller: `playbook-monitoring.yml`).
pub fn promised_services(
    config: &ClusterConfig,
    d: &Deployment,
    platform: bool,
) -> BTreeMap<String, Vec<&'static str>> {
    let postgres = d.postgres_host().map(|h| h.name.clone());
    let mlflow = platform && config.mlflow_runtime() == Some(MlflowRuntime::Service);
    let prometheus = d.monitoring_server().map(|h| h.name.clone());
    let shared_storage = config
        .clusters
        .hpc
        .as_ref()
        .is_some_and(|h| h.shared_storage().is_enabled());
    let monitoring = config
        .global
        .monitoring
        .as_ref()
        .and_then(|m| m.enabled)
        .unwrap_or(true);
    d.hosts
        .iter()
        .map(|h| {
            let mut s: Vec<&'static str> = match h.role {
                // The slurmdbd role: MariaDB and slurmdbd on the controller; nfs_server when storage is shared.
                Role::Controller if shared_storage => {
                    vec!["munge", "mariadb", "slurmdbd", "slurmctld", "nfs-server"]
                }
                Role::Controller => vec!["munge", "mariadb", "slurmdbd", "slurmctld"],
                Role::Compute => vec!["munge", "slurmd"],
                Role::ControlPlane | Role::CpuWorker | Role::GpuWorker if platform => {
                    vec!["containerd", "kubelet"]
                }
                Role::ControlPlane | Role::CpuWorker | Role::GpuWorker => vec!["containerd"],
            };
            if postgres.as_deref() == Some(h.name.as_str()) {
                s.push("postgresql");
                if mlflow {
                    s.push("mlflow");
                }
            }
            if monitoring {
                s.push("prometheus-node-exporter");
                if prometheus.as_deref() == Some(h.name.as_str()) {
                    s.push("prometheus");
                }
            }
            (h.name.clone(), s)
        })
        .collect()
}

/// Runs `status`; returns the exit code.
pub fn run(args: &StatusArgs, out: &mut dyn Write) -> u8 {
    let result = Ctx::new(&args.target, &SystemRunner).and_then(|ctx| {
        let session = Session::load(args.target.place.config.as_deref())?;
        gather(&ctx, &session)
    });
    match result {
        Ok(s) => report(&s, args.format, out),
        Err(e) => e.report(),
    }
}

/// Writes `s` in `format`; the exit code: 0 when nothing promised is down, else 1.
pub fn report(s: &Status, format: Format, out: &mut dyn Write) -> u8 {
    match format {
        Format::Json => {
            let _ = serde_json::to_writer_pretty(&mut *out, s);
            let _ = writeln!(out);
        }
        Format::Text => {
            let _ = out.write_all(text(s).as_bytes());
        }
    }
    if s.down.is_empty() {
        exit::OK
    } else {
        exit::INVALID
    }
}

/// Looks at libvirt, Slurm and the services of the deployment of `session`'s config at `ctx`.
pub fn gather(ctx: &Ctx<'_>, session: &Session) -> Result<Status, Error> {
    let config = &session.config;
    let plan = session.plan()?;
    let d = planned_hosts(config, plan);
    let units = gpu_units(&Layout::new(config, plan));
    let mut down = Vec::new();
    let uri = match sandbox::libvirt_at(ctx, config)? {
        Ok((uri, _)) => Some(uri),
        Err(not_running) => {
            down.push(format!(
                "{not_running}: start it with `hsw-cli up --sandbox-name {}`",
                ctx.sandbox.as_deref().unwrap_or_default()
            ));
            None
        }
    };
    let virsh = uri.as_deref().map(|u| Virsh::new(ctx.runner, u));
    let running = virsh.and_then(|v| v.domains());
    if virsh.is_some() && running.is_none() {
        down.push(format!(
            "libvirt at {} did not answer `virsh list`: is libvirtd running?",
            uri.as_deref().unwrap_or_default()
        ));
    }
    let vms: Vec<VmStatus> = d
        .hosts
        .iter()
        .map(|h| VmStatus {
            gpu_units: units.get(&h.name).cloned().unwrap_or_default(),
            ..vm_status(h, virsh.as_ref(), running.as_deref())
        })
        .collect();
    down.extend(
        vms.iter()
            .filter(|v| !v.up && v.state != "unknown")
            .map(|v| format!("VM {} is {}", v.name, v.state)),
    );
    let is_up = |name: &str| vms.iter().any(|v| v.name == name && v.up);
    let user = ssh_user(config);

    // Asks a running VM; a VM that is not running is already a `down` line.
    let ask_running = |h: &Host, q: (&str, &[&str]), down: &mut Vec<String>| {
        if is_up(&h.name) {
            ask(ctx, &user, h, q, down)
        } else {
            Ok(None)
        }
    };

    let slurm = match d.with_role(Role::Controller).next() {
        Some(ctl) if config.clusters.hpc.is_some() => {
            let sinfo = ask_running(
                ctl,
                ("sinfo -h", &["sinfo", "-h", "-N", "-o", "'%N %t'"]),
                &mut down,
            )?;
            Some(seen_down(
                "Slurm",
                slurm_nodes(sinfo.as_deref(), &d),
                &mut down,
            ))
        }
        _ => None,
    };

    // `up` without --hpc-only and `hsw-cli ansible platform` write the platform's variables first.
    let platform = ctx.state.extra_vars("platform").is_file();
    let kubernetes = match d.with_role(Role::ControlPlane).next() {
        Some(cp) if platform => {
            let nodes = ask_running(cp, ("kubectl get nodes", &GET_NODES), &mut down)?;
            Some(seen_down(
                "Kubernetes",
                kubernetes_nodes(nodes.as_deref(), &d),
                &mut down,
            ))
        }
        _ => None,
    };

    let mut services = Vec::new();
    let promised = promised_services(config, &d, platform);
    for h in &d.hosts {
        let Some(units) = promised.get(&h.name) else {
            continue;
        };
        let mut remote = vec!["systemctl", "is-active"];
        remote.extend(units.iter().copied());
        let states = ask_running(h, ("systemctl is-active", &remote), &mut down)?;
        let answered = states.is_some();
        let states: Vec<String> = states
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().to_owned())
            .collect();
        for (i, unit) in units.iter().enumerate() {
            let state = states
                .get(i)
                .filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
            let up = state == "active";
            if !up && answered {
                down.push(format!("{unit} on {} is {state}", h.name));
            }
            services.push(ServiceStatus {
                vm: h.name.clone(),
                service: unit,
                state,
                up,
            });
        }
    }
    Ok(Status {
        config: session.name.clone(),
        sandbox: ctx.sandbox.clone(),
        vms,
        slurm,
        kubernetes,
        services,
        down,
    })
}

fn vm_status(h: &Host, virsh: Option<&Virsh<'_>>, running: Option<&[String]>) -> VmStatus {
    let (state, address) = match (virsh, running) {
        (Some(v), Some(r)) if r.contains(&h.name) => {
            ("running".to_owned(), v.domain_address(&h.name))
        }
        (Some(v), Some(_)) if !v.uuid_of(&h.name).is_empty() => ("shut off".to_owned(), None),
        (Some(_), Some(_)) => ("not defined".to_owned(), None),
        _ => ("unknown".to_owned(), None),
    };
    VmStatus {
        name: h.name.clone(),
        cluster: h.cluster(),
        role: h.role.as_str(),
        up: state == "running",
        state,
        ip: h.ip.to_string(),
        address,
        gpu_units: Vec::new(),
    }
}

/// Each VM's GPU units from the layout, with how each reaches the VM.
fn gpu_units(layout: &Layout) -> BTreeMap<String, Vec<UnitStatus>> {
    layout
        .vms
        .iter()
        .map(|vm| {
            let units = vm
                .gpu_units
                .iter()
                .map(|u| {
                    let id = u.id();
                    UnitStatus {
                        attach: layout.target(&id).map(|t| t.attach.as_str()),
                        profile: u.profile.clone(),
                        id,
                    }
                })
                .collect();
            (vm.name.clone(), units)
        })
        .collect()
}

/// `remote` on `host` over SSH (inside the sandbox): its output, or `None` with a `down` line naming it `what`
/// when SSH or the command failed with nothing printed (`systemctl is-active` prints its answers and fails when
/// one is not `active`).
fn ask(
    ctx: &Ctx<'_>,
    user: &str,
    host: &Host,
    (what, remote): (&str, &[&str]),
    down: &mut Vec<String>,
) -> Result<Option<String>, Error> {
    let (ok, stdout, stderr) = verify::ssh(ctx, user, host, remote)?;
    if ok || !stdout.trim().is_empty() {
        return Ok(Some(stdout));
    }
    down.push(format!(
        "`{what}` over SSH on {} failed: {}",
        host.name,
        match stderr.trim() {
            "" => "no answer",
            e => e,
        }
    ));
    Ok(None)
}

/// Every planned compute node's state from `sinfo -h -N -o '%N %t'` on the controller (`unknown` without it).
fn slurm_nodes(sinfo: Option<&str>, d: &Deployment) -> Vec<NodeStatus> {
    let listed: BTreeMap<&str, &str> = sinfo
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .map(|(n, s)| (n, s.trim()))
        .collect();
    d.with_role(Role::Compute)
        .map(|h| {
            let state = match listed.get(h.name.as_str()) {
                Some(s) => (*s).to_owned(),
                None if sinfo.is_some() => "missing".to_owned(),
                None => "unknown".to_owned(),
            };
            let base = state.trim_end_matches(|c: char| "*~#!%$@^-".contains(c));
            NodeStatus {
                name: h.name.clone(),
                up: !state.ends_with('*') && SLURM_UP.contains(&base),
                state,
            }
        })
        .collect()
}

/// `nodes`, after a `down` line for each seen down (`{kind} node NAME is STATE`; `unknown` is not seen).
fn seen_down(kind: &str, nodes: Vec<NodeStatus>, down: &mut Vec<String>) -> Vec<NodeStatus> {
    down.extend(
        nodes
            .iter()
            .filter(|n| !n.up && n.state != "unknown")
            .map(|n| format!("{kind} node {} is {}", n.name, n.state)),
    );
    nodes
}

/// Every cloud VM's state as a Kubernetes node from `kubectl get nodes -o json` on the control plane
/// (`unknown` without it).
fn kubernetes_nodes(json: Option<&str>, d: &Deployment) -> Vec<NodeStatus> {
    let listed = json.map(ready_nodes).unwrap_or_default();
    d.of_cluster("cloud")
        .map(|h| {
            let state = match listed.iter().find(|(n, _, _)| *n == h.name) {
                Some((_, _, true)) => "Ready",
                Some((_, _, false)) => "NotReady",
                None if json.is_some() => "missing",
                None => "unknown",
            };
            NodeStatus {
                name: h.name.clone(),
                state: state.to_owned(),
                up: state == "Ready",
            }
        })
        .collect()
}

/// The text form: the VMs as a table, the Slurm and Kubernetes nodes, the services per VM, then what is down.
pub fn text(s: &Status) -> String {
    let mut rows = vec![[
        "VM".to_owned(),
        "CLUSTER".into(),
        "ROLE".into(),
        "STATE".into(),
        "ADDRESS".into(),
        "GPU UNITS".into(),
    ]];
    for v in &s.vms {
        let address = match &v.address {
            Some(a) if *a != v.ip => format!("{a} (planned {})", v.ip),
            Some(a) => a.clone(),
            None => v.ip.clone(),
        };
        let units = if v.gpu_units.is_empty() {
            "-".to_owned()
        } else {
            v.gpu_units
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        rows.push([
            v.name.clone(),
            v.cluster.into(),
            v.role.into(),
            v.state.clone(),
            address,
            units,
        ]);
    }
    let mut out = table(&rows);
    for (title, nodes) in [("Slurm", &s.slurm), ("Kubernetes", &s.kubernetes)] {
        if let Some(nodes) = nodes {
            out.push_str(&format!("\n{title} nodes:\n"));
            for n in nodes {
                out.push_str(&format!(
                    "  {} {}{}\n",
                    n.name,
                    n.state,
                    mark(n.up, &n.state)
                ));
            }
        }
    }
    if !s.services.is_empty() {
        out.push_str("\nServices:\n");
        let mut by_vm: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for sv in &s.services {
            by_vm.entry(sv.vm.as_str()).or_default().push(format!(
                "{} {}{}",
                sv.service,
                sv.state,
                mark(sv.up, &sv.state)
            ));
        }
        for v in &s.vms {
            if let Some(list) = by_vm.get(v.name.as_str()) {
                out.push_str(&format!("  {}: {}\n", v.name, list.join(", ")));
            }
        }
    }
    out.push('\n');
    if s.down.is_empty() {
        out.push_str("hsw: everything cluster.yaml promises is up\n");
    } else {
        for d in &s.down {
            out.push_str(&format!("down: {d}\n"));
        }
        out.push_str(&format!(
            "hsw: the cause and fix of each: {}\n",
            crate::error::troubleshooting("What `hsw-cli status` reports down")
        ));
    }
    out
}

/// ` (DOWN)` for what was seen down; nothing for what is up or could not be asked (`unknown`).
fn mark(up: bool, state: &str) -> &'static str {
    if up || state == "unknown" {
        ""
    } else {
        " (DOWN)"
    }
}

/// Left-aligned columns, two spaces apart, no trailing blanks.
fn table(rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
