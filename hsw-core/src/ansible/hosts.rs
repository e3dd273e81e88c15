//! The VMs that exist, as Terraform reports them, checked against `cluster.yaml`.
//!
//! # The Terraform output contract
//!
//! The root module `hsw-cli generate` writes has one output, [`TERRAFORM_OUTPUT`] (`hsw_inventory`), whose
//! value has this shape (what `terraform output -json` prints around it, `{"hsw_inventory": {"sensitive":
//! false, "type": ..., "value": VALUE}}`, is accepted too, and so is VALUE alone):
//!
//! ```json
//! {
//!   "gpu_backend": "simulated",
//!   "clusters": {
//!     "hpc": [
//!       {"name": "hsw-dev-controller-1", "role": "controller", "ip": "192.168.100.10", "gpu_units": []},
//!       {"name": "hsw-dev-compute-1", "role": "compute", "ip": "192.168.100.11",
//!        "gpu_units": [{"kind": "mig", "device": "GPU-0", "profile": "1g.10gb", "mdev_uuid": null}]}
//!     ],
//!     "cloud": [
//!       {"name": "hsw-dev-control-plane-1", "role": "control_plane", "ip": "192.168.200.10"}
//!     ]
//!   }
//! }
//! ```
//!
//! - `gpu_backend` (optional): `nvml` or `simulated`, the backend the provider used; it decides how
//!   `gres.conf` names GPUs (see [`crate::slurm`]). Absent or `auto`: `host.gpu_backend` of `cluster.yaml`.
//! - `clusters`: `hpc` and/or `cloud`, each a list of hosts (`null` is an empty list).
//! - a host: `name` (the VM's host name: a DNS label), `role` (`controller`, `compute` for `hpc`;
//!   `control_plane`, `cpu_worker`, `gpu_worker` for `cloud`), `ip` (IPv4), `gpu_units` (optional).
//! - a GPU unit: `kind` (`mig`: a MIG instance, given to the VM as a MIG-backed vGPU when `mdev_uuid` is set;
//!   `whole`: a GPU passed through; `mdev`: a time-sliced vGPU), `device` (the id from
//!   `global.gpu_allocation.devices`), `profile` (MIG profile, or vGPU type; required for `mig`),
//!   `mdev_uuid` and `pci_address` (optional).
//!
//! Keys not listed are ignored, so the output may carry more. When every host of a GPU group comes without
//! `gpu_units`, the units are taken from the GPU plan in host order, exactly as [`planned_hosts`] assigns them
//! (see [`crate::layout`]). Only [`parse_terraform_output`] knows this shape: adapt it there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::model::{ClusterConfig, GpuBackend, CLUSTER_KEYS};
use crate::config::rules::{groups, parse_ip_range};
use crate::gpu::plan::GpuPlan;
use crate::layout::Layout;
pub use crate::layout::{GpuUnit, Role, UnitKind};

use crate::render::terraform::INVENTORY_OUTPUT as TERRAFORM_OUTPUT;

/// One VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// Host name (a DNS label); also the Ansible host and the Slurm NodeName.
    pub name: String,
    /// What the VM is for.
    pub role: Role,
    /// The address Ansible and Slurm reach it at.
    pub ip: Ipv4Addr,
    /// Its GPU units, in device order inside the VM (`/dev/nvidia0` first).
    pub gpu_units: Vec<GpuUnit>,
}

impl Host {
    /// The cluster key (`hpc` or `cloud`).
    pub fn cluster(&self) -> &'static str {
        self.role.cluster()
    }
}

/// The VMs of both clusters, and which GPU backend made their GPU units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// `nvml` or `simulated` as the provider reported it; `None` when unknown.
    pub gpu_backend: Option<GpuBackend>,
    /// The hosts, by role then by name (numbers in names compare as numbers).
    pub hosts: Vec<Host>,
}

impl Deployment {
    /// Whether the GPU units are simulated (no device files in the VMs). Decided by the provider's report,
    /// else by `host.gpu_backend`; `auto` with no report counts as simulated, the choice that cannot make
    /// `slurmd` wait for device files that do not exist.
    pub fn gpus_simulated(&self, config: &ClusterConfig) -> bool {
        let backend = match self.gpu_backend {
            Some(b @ (GpuBackend::Nvml | GpuBackend::Simulated)) => b,
            _ => config.gpu_backend(),
        };
        backend != GpuBackend::Nvml
    }

    /// The hosts of one role.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.role == role)
    }

    /// The hosts of one cluster.
    pub fn of_cluster<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a Host> {
        self.hosts.iter().filter(move |h| h.cluster() == cluster)
    }

    /// The VM that runs Prometheus: the first Kubernetes control plane, else the Slurm controller. `up` and
    /// `ansible platform` hand it to the playbooks as `monitoring_server` (whose default in
    /// `ansible/group_vars/all/monitoring.yml` is this rule, for runs without hsw-cli).
    pub fn monitoring_server(&self) -> Option<&Host> {
        self.with_role(Role::ControlPlane)
            .next()
            .or_else(|| self.with_role(Role::Controller).next())
    }

    /// The VM that runs MLflow's PostgreSQL: the first CPU worker, else the Kubernetes control plane. Handed
    /// to the playbooks as `mlops_postgres_host` (default in `ansible/group_vars/all/mlops.yml`).
    pub fn postgres_host(&self) -> Option<&Host> {
        self.with_role(Role::CpuWorker)
            .next()
            .or_else(|| self.with_role(Role::ControlPlane).next())
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// Why the hosts cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostsError {
    /// The text is not JSON.
    #[error("the Terraform output is not JSON ({0})")]
    NotJson(String),
    /// No `hsw_inventory` output.
    #[error(
        "the Terraform output has no `{TERRAFORM_OUTPUT}` output (it has: {found}); apply the root module \
         `hsw-cli generate` wrote (`terraform apply`) and try again"
    )]
    NoInventoryOutput {
        /// The output names found, or `none`.
        found: String,
    },
    /// The output's value has the wrong shape.
    #[error(
        "the `{TERRAFORM_OUTPUT}` output does not have the expected shape at `{path}`: {message}"
    )]
    Shape {
        /// Where (a path like `clusters.hpc[1].ip`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The hosts contradict `cluster.yaml` (every finding, one per line).
    #[error("the VMs Terraform reports do not match cluster.yaml:\n{}", bullet(.0))]
    Mismatch(Vec<String>),
}

fn bullet(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct RawValue {
    #[serde(default)]
    gpu_backend: Option<String>,
    clusters: BTreeMap<String, Option<Vec<RawHost>>>,
}

#[derive(Debug, Deserialize)]
struct RawHost {
    name: String,
    role: String,
    ip: String,
    #[serde(default)]
    gpu_units: Option<Vec<RawUnit>>,
}

#[derive(Debug, Deserialize)]
struct RawUnit {
    kind: String,
    device: String,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    mdev_uuid: Option<String>,
    #[serde(default)]
    pci_address: Option<String>,
}

/// Parses `terraform output -json` text (see the module docs for the shape). The hosts are not yet
/// checked against `cluster.yaml`: see [`resolve`].
pub fn parse_terraform_output_str(text: &str) -> Result<Deployment, HostsError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| HostsError::NotJson(e.to_string()))?;
    parse_terraform_output(&value)
}

/// Parses `terraform output -json` (or the `hsw_inventory` value alone). This is the one function that
/// knows the output's shape.
pub fn parse_terraform_output(json: &serde_json::Value) -> Result<Deployment, HostsError> {
    let value = match json.get(TERRAFORM_OUTPUT) {
        Some(output) => output.get("value").ok_or_else(|| HostsError::Shape {
            path: TERRAFORM_OUTPUT.into(),
            message: "the output has no `value`".into(),
        })?,
        None if json.get("clusters").is_some() => json,
        None => {
            let found = match json.as_object() {
                Some(m) if !m.is_empty() => m
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "none".into(),
            };
            return Err(HostsError::NoInventoryOutput { found });
        }
    };
    let raw: RawValue = serde_path_to_error::deserialize(value).map_err(|e| HostsError::Shape {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    let shape = |path: String, message: String| HostsError::Shape { path, message };
    let gpu_backend = match raw.gpu_backend.as_deref() {
        None | Some("" | "auto") => None,
        Some("nvml") => Some(GpuBackend::Nvml),
        Some("simulated") => Some(GpuBackend::Simulated),
        Some(other) => {
            return Err(shape(
                "gpu_backend".into(),
                format!("`{other}` is not a GPU backend (nvml or simulated)"),
            ))
        }
    };
    let mut hosts = Vec::new();
    for (cluster, list) in raw.clusters {
        if !CLUSTER_KEYS.contains(&cluster.as_str()) {
            return Err(shape(
                format!("clusters.{cluster}"),
                "the clusters are `hpc` and `cloud`".into(),
            ));
        }
        for (i, h) in list.unwrap_or_default().into_iter().enumerate() {
            let at = format!("clusters.{cluster}[{i}]");
            let role = Role::parse(&h.role)
                .filter(|r| r.cluster() == cluster)
                .ok_or_else(|| {
                    let roles: Vec<&str> = Role::ALL
                        .iter()
                        .filter(|r| r.cluster() == cluster)
                        .map(|r| r.as_str())
                        .collect();
                    shape(
                        format!("{at}.role"),
                        format!(
                            "`{}` is not a role of the {cluster} cluster ({})",
                            h.role,
                            roles.join(", ")
                        ),
                    )
                })?;
            if !is_host_name(&h.name) {
                return Err(shape(
                    format!("{at}.name"),
                    format!(
                        "`{}` is not a host name (lowercase letters, digits and inner hyphens, at most 63)",
                        h.name
                    ),
                ));
            }
            let ip: Ipv4Addr = h.ip.parse().map_err(|_| {
                shape(
                    format!("{at}.ip"),
                    format!("`{}` is not an IPv4 address", h.ip),
                )
            })?;
            let mut gpu_units = Vec::new();
            for (j, u) in h.gpu_units.unwrap_or_default().into_iter().enumerate() {
                let uat = format!("{at}.gpu_units[{j}]");
                gpu_units.push(parse_unit(u).map_err(|m| shape(uat, m))?);
            }
            hosts.push(Host {
                name: h.name,
                role,
                ip,
                gpu_units,
            });
        }
    }
    sort_hosts(&mut hosts);
    Ok(Deployment { gpu_backend, hosts })
}

fn parse_unit(u: RawUnit) -> Result<GpuUnit, String> {
    let kind = match u.kind.as_str() {
        "mig" => UnitKind::Mig,
        "whole" => UnitKind::Whole,
        "mdev" => UnitKind::Mdev,
        other => {
            return Err(format!(
                "`{other}` is not a GPU unit kind (mig, whole, mdev)"
            ))
        }
    };
    if !is_token(&u.device) {
        return Err(format!("`{}` is not a device id", u.device));
    }
    let profile = u.profile.filter(|p| !p.is_empty());
    match &profile {
        None if kind == UnitKind::Mig => {
            return Err("a MIG unit needs its `profile` (e.g. `1g.10gb`)".into())
        }
        Some(p) if !is_profile(p) => {
            return Err(format!(
                "`{p}` is not a profile name (letters, digits, `.`, `_`, `+`, `-`)"
            ))
        }
        _ => {}
    }
    let mdev_uuid = u.mdev_uuid.filter(|s| !s.is_empty());
    if let Some(uuid) = &mdev_uuid {
        if !is_uuid(uuid) {
            return Err(format!(
                "`{uuid}` is not a UUID (8-4-4-4-12 hexadecimal digits)"
            ));
        }
    }
    let pci_address = u.pci_address.filter(|s| !s.is_empty());
    if let Some(pci) = &pci_address {
        if !is_pci_address(pci) {
            return Err(format!("`{pci}` is not a PCI address (DDDD:BB:DD.F)"));
        }
    }
    Ok(GpuUnit {
        kind,
        device: u.device,
        profile,
        mdev_uuid,
        pci_address,
        placement_start: None,
        gpu_pci: None,
    })
}

/// A DNS label: lowercase letters, digits, inner hyphens, 1 to 63 characters.
pub fn is_host_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_profile(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'+'))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// Orders hosts by role, then by name with numbers compared as numbers (`compute-2` before `compute-10`).
pub fn sort_hosts(hosts: &mut [Host]) {
    hosts.sort_by(|a, b| {
        a.role
            .cmp(&b.role)
            .then_with(|| natural_key(&a.name).cmp(&natural_key(&b.name)))
    });
}

fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in name.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(c);
        }
    }
    let tail = if digits.is_empty() {
        0
    } else {
        digits.parse().unwrap_or(u64::MAX)
    };
    out.push((text, tail));
    out
}

// ---------------------------------------------------------------------------------------
// Planned hosts and GPU units
// ---------------------------------------------------------------------------------------

/// The hosts `cluster.yaml` asks for, from its [`Layout`]: what the Terraform output should report once
/// applied.
pub fn planned_hosts(config: &ClusterConfig, plan: &GpuPlan) -> Deployment {
    let mut hosts: Vec<Host> = Layout::new(config, plan)
        .vms
        .into_iter()
        .map(|v| Host {
            name: v.name,
            role: v.role,
            ip: v.ip,
            gpu_units: v.gpu_units.iter().map(GpuUnit::as_reported).collect(),
        })
        .collect();
    sort_hosts(&mut hosts);
    let gpu_backend = Some(config.gpu_backend()).filter(|b| *b != GpuBackend::Auto);
    Deployment { gpu_backend, hosts }
}

/// Checks the hosts Terraform reports against `cluster.yaml` and fills in GPU units the output left out
/// (from the plan, as the [`Layout`] assigns them). Every finding is reported at once:
/// unique names and addresses, each cluster present in `cluster.yaml`, as many VMs per role as the group's
/// `count`, each address inside the group's range, each GPU unit naming a device of `gpu_allocation`, and as
/// many units per VM as `gpus_per_node`.
pub fn resolve(
    config: &ClusterConfig,
    plan: &GpuPlan,
    mut deployment: Deployment,
) -> Result<Deployment, HostsError> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    let mut ips: HashMap<Ipv4Addr, &str> = HashMap::new();
    for h in &deployment.hosts {
        if !names.insert(h.name.as_str()) {
            problems.push(format!(
                "host name `{}` is used by more than one VM",
                h.name
            ));
        }
        if let Some(other) = ips.insert(h.ip, &h.name) {
            problems.push(format!(
                "address {} is used by both `{other}` and `{}`",
                h.ip, h.name
            ));
        }
    }
    let devices: Vec<&str> = config.gpu_devices().iter().map(|d| d.id.as_str()).collect();
    let all_groups = groups(config);
    for cluster in CLUSTER_KEYS {
        let in_config = all_groups.iter().any(|g| g.cluster == cluster);
        let reported = deployment.of_cluster(cluster).count();
        if !in_config && reported > 0 {
            problems.push(format!(
                "Terraform reports {reported} VM{} of the {cluster} cluster, which cluster.yaml does not define",
                plural(reported)
            ));
        }
    }
    let planned = Layout::new(config, plan);
    for g in &all_groups {
        let Some(role) = Role::parse(g.role) else {
            continue;
        };
        let hosts: Vec<&Host> = deployment.with_role(role).collect();
        let at = g.pointer.trim_start_matches('/').replace('/', ".");
        if hosts.len() != g.count as usize {
            problems.push(format!(
                "Terraform reports {} {} VM{} but `{at}` asks for {}; run `terraform apply` after changing cluster.yaml",
                hosts.len(),
                role.as_str(),
                plural(hosts.len()),
                g.count
            ));
        }
        if let Ok((first, last)) = parse_ip_range(g.addresses.0) {
            for h in &hosts {
                if u32::from(h.ip) < u32::from(first) || u32::from(h.ip) > u32::from(last) {
                    problems.push(format!(
                        "`{}` has address {} outside `{at}.{}` ({})",
                        h.name, h.ip, g.addresses.1, g.addresses.0
                    ));
                }
            }
        }
        for h in &hosts {
            for u in &h.gpu_units {
                if !devices.contains(&u.device.as_str()) {
                    problems.push(format!(
                        "`{}` holds a GPU unit of device `{}`, which `global.gpu_allocation.devices` does not list",
                        h.name, u.device
                    ));
                }
            }
        }
        let none_given = hosts.iter().all(|h| h.gpu_units.is_empty());
        if g.gpu_units == 0 {
            for h in hosts.iter().filter(|h| !h.gpu_units.is_empty()) {
                problems.push(format!(
                    "`{}` holds {} GPU unit{} but `{at}` is not GPU-enabled",
                    h.name,
                    h.gpu_units.len(),
                    plural(h.gpu_units.len())
                ));
            }
        } else if !none_given {
            for h in hosts
                .iter()
                .filter(|h| h.gpu_units.len() != g.gpu_units as usize)
            {
                problems.push(format!(
                    "`{}` holds {} GPU unit{} but `{at}.gpus_per_node` is {}",
                    h.name,
                    h.gpu_units.len(),
                    plural(h.gpu_units.len()),
                    g.gpu_units
                ));
            }
        }
        if g.gpu_units > 0 && none_given {
            let mut per_vm = planned
                .with_role(role)
                .map(|v| v.gpu_units.iter().map(GpuUnit::as_reported).collect());
            for h in deployment.hosts.iter_mut().filter(|h| h.role == role) {
                h.gpu_units = per_vm.next().unwrap_or_default();
            }
        }
    }
    if problems.is_empty() {
        Ok(deployment)
    } else {
        Err(HostsError::Mismatch(problems))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = ["n-10", "n-2", "n-1"].map(|n| Host {
            name: n.into(),
            role: Role::Compute,
            ip: Ipv4Addr::LOCALHOST,
            gpu_units: vec![],
        });
        sort_hosts(&mut v);
        let names: Vec<&str> = v.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["n-1", "n-2", "n-10"]);
    }

    #[test]
    fn small_validators() {
        assert!(is_host_name("hsw-dev-hpc-compute-1"));
        assert!(!is_host_name("-a"));
        assert!(!is_host_name("A"));
        assert!(!is_host_name("a_b"));
        assert!(is_uuid("6f1e9a3c-1d2b-4c5e-8f70-0123456789ab"));
        assert!(!is_uuid("6f1e9a3c-1d2b-4c5e-8f70"));
        assert!(is_pci_address("0000:65:00.0"));
        assert!(!is_pci_address("0000:65:00"));
    }
}
