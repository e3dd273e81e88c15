//! `slurm.conf`, `gres.conf` and `cgroup.conf` for the HPC cluster, rendered from `cluster.yaml` and the
//! hosts (with their GPU units: from Terraform, or planned, see [`crate::ansible::hosts`]), then checked by
//! our own checker ([`check`]) since Slurm barely validates its configuration.
//!
//! # Choices
//!
//! - **Every node line has `NodeAddr`** (a NodeName Slurm cannot resolve is dropped silently), and
//!   `SlurmctldHost=<controller>(<address>)`.
//! - **`RealMemory` = the VM's memory − a reserve** of 256 MiB + 5 % (rounded up), see [`real_memory_mib`].
//!   The guest kernel keeps part of the VM's memory for itself, so `slurmd -C` reports less than the VM
//!   was given (a 1 GiB guest shows about 960 MiB); a node whose `RealMemory` exceeds what slurmd finds is
//!   drained ("Low RealMemory"). The reserve covers that and leaves room for the OS's own daemons (munged,
//!   sshd, journald), which jobs must not be scheduled into. A 1 GiB VM gets 716 MiB, 16 GiB gets 15 308 MiB.
//! - **`CPUs` = the VM's vCPUs.** `SelectType=select/cons_tres` with `CR_Core_Memory` (the 22.05 default
//!   `select/linear` cannot track GPUs); cgroup process tracking and task plugins (real VMs, not containers).
//! - **Gres types**: a MIG instance's type is its profile (`1g.10gb`; a `+` as in `1g.10gb+me` becomes `_`,
//!   since Slurm names are `[A-Za-z0-9_.-]`), a whole GPU's is its model without `NVIDIA` in lowercase
//!   (`NVIDIA A100-SXM4-80GB` → `a100-sxm4-80gb`, spaces → `_`), a time-sliced vGPU's is its vGPU type.
//!   `Gres=gpu:<type>:<n>` per type; `GresTypes=gpu` whenever a node has a GPU.
//! - **Simulated GPUs**: the simulated backend creates no device files in the VMs; `slurmd` waits forever
//!   ("Waiting for gres.conf file") for a `File=` that does not exist, and Slurm 22.05 drops a GPU without
//!   `File=` ("Removing file-less GPU"), which then drains the node ("gres/gpu count reported lower than
//!   configured"). So each simulated unit is one line with `File=`[`SIM_GPU_DEVICE_PREFIX`]`<j>`, a placeholder
//!   character device (1:3, like /dev/null) the playbook's slurm role makes (a systemd-tmpfiles rule, so it is
//!   there again after a reboot), under a comment naming the simulated device and placement;
//!   `ConstrainDevices=no` in cgroup.conf (there is nothing to constrain). Slurm schedules them exactly like
//!   real ones (`--gres=gpu:1g.10gb:1`), and says they are not: gres.conf's header and the node's `Features`
//!   ([`SIM_GPU_FEATURE`], shown by `sinfo -o %f`).
//! - **Real GPUs** (any backend but `simulated`, see [`crate::ansible::Deployment::gpus_simulated`]): each
//!   unit the VM holds is one line with `File=/dev/nvidia<i>`, `i` its order in the VM (`/dev/nvidia0` first),
//!   the device the guest driver creates for a passed-through GPU and for a MIG-backed vGPU alike; and
//!   `ConstrainDevices=yes`. Never a placeholder: a unit whose device is missing in the guest (driver not
//!   loaded, vGPU not attached yet) leaves slurmd waiting and the node not responding, which `sinfo` shows,
//!   instead of jobs scheduled onto no GPU.
//! - **Accounting**: slurmctld sends jobs to slurmdbd on the controller (`AccountingStorageType=
//!   accounting_storage/slurmdbd`, `AccountingStorageHost` = the controller's address, so `sacct` works from
//!   every node), which keeps them in MariaDB ([`SLURMDBD_CONF`]'s `StorageType=accounting_storage/mysql`,
//!   database [`ACCOUNTING_DB`]). `AccountingStorageTRES=gres/gpu` (when a node has a GPU) counts GPUs, job usage comes from
//!   cgroups (`JobAcctGatherType=jobacct_gather/cgroup`), and `AccountingStorageEnforce=associations,limits,qos`
//!   makes accounts and QoS limits binding (a user needs an association: the login user is put in `root`).
//!   The database password is never in the rendered text: the playbook appends `StoragePass=` on the
//!   controller from the password file.
//! - **Priority** is multifactor with a fairshare weight (the accounts' `fairshare` shares).
//! - **Partitions** hold the node sets they name (`all`, `gpu`, `cpu`, `compute_nodes`; a plain name as in
//!   1.0 holds every compute node), with their own `DefaultTime` and `MaxTime`.
//! - **Node lifecycle**: `ReturnToService=2` (a rebooted node with a valid configuration comes back idle);
//!   `StateSaveLocation` is on the controller's own disk, so queued jobs survive a slurmctld restart.
//! - **MPI**: `MpiDefault=none`; MPI programs launch with `srun --mpi=pmix` (Debian's Slurm ships
//!   `mpi_pmix_v4`, which loads the same libpmix 4 that Debian's Open MPI is built on).
//! - Nothing is auto-detected (no `AutoDetect=nvml`): Debian's Slurm is built without the NVML plugin, and
//!   explicit lines keep the gres types (`1g.10gb`) hsw planned, so gres.conf is explicit.

pub mod check;
pub mod model;
pub mod site;

use crate::ansible::hosts::{Deployment, Host};
use crate::config::model::ClusterConfig;
use crate::layout::{GpuUnit, Role, UnitKind};
use model::{
    CgroupConf, Gres, GresConf, GresLine, Key, NodeDef, PartitionDef, SlurmConf, SlurmdbdConf,
};

/// Where the controller keeps its state.
pub const STATE_SAVE_LOCATION: &str = "/var/lib/slurm/slurmctld";
/// Where slurmd keeps its spool.
pub const SLURMD_SPOOL_DIR: &str = "/var/lib/slurm/slurmd";
/// Where the daemons log.
pub const LOG_DIR: &str = "/var/log/slurm";
/// slurmdbd's port.
pub const SLURMDBD_PORT: u16 = 6819;
/// The MariaDB database of Slurm's accounting.
pub const ACCOUNTING_DB: &str = "slurm_acct_db";
/// The MariaDB user slurmdbd logs in as (its password: [`crate::ansible::StateLayout`]'s
/// `slurmdbd_password`, made once by hsw-cli).
pub const ACCOUNTING_DB_USER: &str = "slurm";
/// Where slurmdbd's configuration goes (0600, owned by `slurm`: it holds the database password).
pub const SLURMDBD_CONF: &str = "/etc/slurm/slurmdbd.conf";
/// `PriorityWeightFairshare`.
pub const FAIRSHARE_WEIGHT: u32 = 10000;
/// The placeholder devices of GPU units with no device in the VM (simulated GPUs): `<prefix><j>`, `j` from 0
/// per node. The playbook's slurm role makes them (character devices 1:3).
pub const SIM_GPU_DEVICE_PREFIX: &str = "/dev/hsw-sim-gpu";
/// The node feature of compute nodes whose GPU units are simulated (`sinfo -o "%n %f"` shows it).
pub const SIM_GPU_FEATURE: &str = "simulated_gpu";

/// The three files, as typed models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmFiles {
    /// `slurm.conf`.
    pub slurm_conf: SlurmConf,
    /// `gres.conf`.
    pub gres_conf: GresConf,
    /// `cgroup.conf`.
    pub cgroup_conf: CgroupConf,
    /// `slurmdbd.conf`, without its password.
    pub slurmdbd_conf: SlurmdbdConf,
}

/// The three files' text, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFiles {
    /// `slurm.conf`.
    pub slurm_conf: String,
    /// `gres.conf`.
    pub gres_conf: String,
    /// `cgroup.conf`.
    pub cgroup_conf: String,
    /// `slurmdbd.conf`, without `StoragePass` (the playbook appends it on the controller).
    pub slurmdbd_conf: String,
}

/// Why the files cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlurmError {
    /// No `clusters.hpc`.
    #[error("cluster.yaml defines no hpc cluster, so there is no Slurm configuration to render")]
    NoHpcCluster,
    /// No controller host.
    #[error("the host list has no hpc controller: Slurm needs one for SlurmctldHost")]
    NoController,
    /// The checker found mistakes (every finding, one per line).
    #[error("the rendered Slurm configuration is not valid:\n{}", .0.iter().map(|l| format!("  - {l}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

/// `RealMemory` for a VM of `memory_gb` GiB: the memory in MiB less a reserve of 256 MiB + 5 % (rounded
/// up), at least 1. See the module documentation for why.
pub fn real_memory_mib(memory_gb: u32) -> u64 {
    let total = u64::from(memory_gb) * 1024;
    let reserve = 256 + total.div_ceil(20);
    total.saturating_sub(reserve).max(1)
}

/// The Slurm `ClusterName`: `slurm_config.cluster_name`, else `metadata.name` with `-` as `_`.
pub fn cluster_name(config: &ClusterConfig) -> String {
    config
        .clusters
        .hpc
        .as_ref()
        .and_then(|h| h.slurm_config.cluster_name.clone())
        .unwrap_or_else(|| config.metadata.name.replace('-', "_"))
}

/// The gres type of a GPU unit (see the module documentation).
pub fn gres_type(config: &ClusterConfig, unit: &GpuUnit) -> String {
    let from_profile = unit
        .profile
        .as_deref()
        .map(sanitize)
        .filter(|s| !s.is_empty());
    match (unit.kind, from_profile) {
        (UnitKind::Mig | UnitKind::Mdev, Some(p)) => p,
        _ => model_type(config, &unit.device),
    }
}

fn model_type(config: &ClusterConfig, device: &str) -> String {
    let model = config
        .gpu_devices()
        .iter()
        .find(|d| d.id == device)
        .map(|d| d.model.to_lowercase())
        .unwrap_or_default();
    let model = model.trim();
    let model = model.strip_prefix("nvidia").unwrap_or(model);
    let t = sanitize(model.trim());
    if t.is_empty() {
        "gpu".into()
    } else {
        t
    }
}

fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    out.trim_matches('_').to_owned()
}

/// A host's gres, one entry per type in the order the types first appear.
pub fn node_gres(config: &ClusterConfig, host: &Host) -> Vec<Gres> {
    let mut out: Vec<Gres> = Vec::new();
    for u in &host.gpu_units {
        let kind = gres_type(config, u);
        match out.iter_mut().find(|g| g.kind == kind) {
            Some(g) => g.count += 1,
            None => out.push(Gres {
                name: "gpu".into(),
                kind,
                count: 1,
            }),
        }
    }
    out
}

/// Builds the typed files from `cluster.yaml` and the hosts.
pub fn build(config: &ClusterConfig, deployment: &Deployment) -> Result<SlurmFiles, SlurmError> {
    let hpc = config
        .clusters
        .hpc
        .as_ref()
        .ok_or(SlurmError::NoHpcCluster)?;
    let controller = deployment
        .with_role(Role::Controller)
        .next()
        .ok_or(SlurmError::NoController)?;
    let simulated = deployment.gpus_simulated(config);
    let group = &hpc.compute_nodes;
    let compute: Vec<&Host> = deployment.with_role(Role::Compute).collect();

    let nodes: Vec<NodeDef> = compute
        .iter()
        .map(|h| NodeDef {
            name: h.name.clone(),
            addr: h.ip.to_string(),
            cpus: group.cpu_cores,
            real_memory: real_memory_mib(group.memory_gb),
            gres: node_gres(config, h),
            features: if simulated && !h.gpu_units.is_empty() {
                vec![SIM_GPU_FEATURE.to_owned()]
            } else {
                Vec::new()
            },
        })
        .collect();
    let any_gpu = nodes.iter().any(|n| !n.gres.is_empty());

    let mut settings: Vec<(Key, String)> = vec![
        (Key::ClusterName, cluster_name(config)),
        (
            Key::SlurmctldHost,
            format!("{}({})", controller.name, controller.ip),
        ),
        (Key::AuthType, "auth/munge".into()),
        (Key::SlurmUser, "slurm".into()),
        (Key::SlurmdUser, "root".into()),
        (Key::SlurmctldPort, "6817".into()),
        (Key::SlurmdPort, "6818".into()),
        (Key::StateSaveLocation, STATE_SAVE_LOCATION.into()),
        (Key::SlurmdSpoolDir, SLURMD_SPOOL_DIR.into()),
        (Key::SlurmctldPidFile, "/run/slurmctld.pid".into()),
        (Key::SlurmdPidFile, "/run/slurmd.pid".into()),
        (Key::SlurmctldLogFile, format!("{LOG_DIR}/slurmctld.log")),
        (Key::SlurmdLogFile, format!("{LOG_DIR}/slurmd.log")),
        (Key::SchedulerType, "sched/backfill".into()),
        (Key::SelectType, "select/cons_tres".into()),
        (Key::SelectTypeParameters, "CR_Core_Memory".into()),
        (Key::ProctrackType, "proctrack/cgroup".into()),
        (Key::TaskPlugin, "task/cgroup".into()),
        (Key::ReturnToService, "2".into()),
        (Key::MpiDefault, "none".into()),
        (
            Key::AccountingStorageType,
            "accounting_storage/slurmdbd".into(),
        ),
        (Key::AccountingStorageHost, controller.ip.to_string()),
        (Key::AccountingStoragePort, SLURMDBD_PORT.to_string()),
        (
            Key::AccountingStorageEnforce,
            "associations,limits,qos".into(),
        ),
        (Key::JobAcctGatherType, "jobacct_gather/cgroup".into()),
        (Key::PriorityType, "priority/multifactor".into()),
        (Key::PriorityWeightFairshare, FAIRSHARE_WEIGHT.to_string()),
    ];
    if any_gpu {
        settings.push((Key::GresTypes, "gpu".into()));
        // GPUs are counted in sacct and limited by QoS (MaxTRESPerUser=gres/gpu=N) only when they are a TRES.
        settings.push((Key::AccountingStorageTres, "gres/gpu".into()));
    }
    let node_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let s = &hpc.slurm_config;
    let partitions = s
        .partitions
        .iter()
        .map(|p| PartitionDef {
            name: p.name().to_owned(),
            nodes: if crate::config::hpc::partition_holds(p, group) {
                node_names.clone()
            } else {
                Vec::new()
            },
            default: p.name() == s.default_partition,
            default_time: p.default_time().map(str::to_owned),
            max_time: p.max_time(&s.max_job_time).to_owned(),
        })
        .collect();
    let header = |file: &str| {
        vec![
            format!(
                "{file} of the `{}` Slurm cluster, generated by hsw-cli from cluster.yaml (`{}`).",
                cluster_name(config),
                config.metadata.name
            ),
            "Do not edit: `hsw-cli ansible hpc` overwrites it.".to_owned(),
        ]
    };

    let mut gres_comments = header("gres.conf");
    let mut lines = Vec::new();
    if !any_gpu {
        gres_comments.push("No compute node has a GPU.".into());
    } else if simulated {
        gres_comments.extend([
            String::new(),
            "The GPUs are SIMULATED (host.gpu_backend): no GPU device exists in the VMs, and Slurm drops a".into(),
            format!("GPU without File=, so each unit has a placeholder device {SIM_GPU_DEVICE_PREFIX}<j> (made by the playbook)."),
            format!("Slurm schedules these units like real ones (--gres=gpu:<type>:<n>); the nodes carry Features={SIM_GPU_FEATURE}."),
        ]);
    } else {
        gres_comments.extend([
            String::new(),
            "One line per GPU unit of the VM: the device the NVIDIA guest driver creates for it (/dev/nvidia<i>,".into(),
            "i its order in the VM), a passed-through GPU and a MIG-backed vGPU alike. A node whose device is".into(),
            "missing (driver not loaded, vGPU not attached) does not respond in sinfo until it exists.".into(),
        ]);
    }
    for h in &compute {
        for (i, u) in h.gpu_units.iter().enumerate() {
            let (comment, file) = if simulated {
                (
                    format!("{}: {} (simulated)", h.name, describe_unit(u)),
                    format!("{SIM_GPU_DEVICE_PREFIX}{i}"),
                )
            } else {
                (
                    format!("{}: {}", h.name, describe_unit(u)),
                    format!("/dev/nvidia{i}"),
                )
            };
            lines.push(GresLine {
                comment: Some(comment),
                node: h.name.clone(),
                name: "gpu".into(),
                kind: gres_type(config, u),
                file: Some(file),
                count: None,
            });
        }
    }
    let any_file = lines.iter().any(|l| {
        l.file
            .as_deref()
            .is_some_and(|f| !f.starts_with(SIM_GPU_DEVICE_PREFIX))
    });

    let cgroup = CgroupConf {
        comments: header("cgroup.conf"),
        settings: vec![
            ("CgroupPlugin", "autodetect".into()),
            ("ConstrainCores", "yes".into()),
            ("ConstrainRAMSpace", "yes".into()),
            (
                "ConstrainDevices",
                if any_file { "yes" } else { "no" }.into(),
            ),
        ],
    };
    let mut slurm_comments = header("slurm.conf");
    slurm_comments.push(format!(
        "RealMemory = the VM's memory less 256 MiB + 5 % for the guest kernel and the OS ({} GiB -> {} MiB).",
        group.memory_gb,
        real_memory_mib(group.memory_gb)
    ));
    Ok(SlurmFiles {
        slurm_conf: SlurmConf {
            comments: slurm_comments,
            settings,
            nodes,
            partitions,
        },
        gres_conf: GresConf {
            comments: gres_comments,
            lines,
        },
        cgroup_conf: cgroup,
        slurmdbd_conf: SlurmdbdConf {
            comments: {
                let mut c = header("slurmdbd.conf");
                c.push("The database password (StoragePass) is appended on the controller from the file hsw-cli made; it is never logged.".into());
                c
            },
            settings: vec![
                ("AuthType", "auth/munge".into()),
                ("DbdHost", "localhost".into()),
                ("DbdPort", SLURMDBD_PORT.to_string()),
                ("SlurmUser", "slurm".into()),
                ("LogFile", format!("{LOG_DIR}/slurmdbd.log")),
                ("PidFile", "/run/slurmdbd.pid".into()),
                ("StorageType", "accounting_storage/mysql".into()),
                ("StorageHost", "localhost".into()),
                ("StoragePort", "3306".into()),
                ("StorageUser", ACCOUNTING_DB_USER.into()),
                ("StorageLoc", ACCOUNTING_DB.into()),
            ],
        },
    })
}

fn describe_unit(u: &GpuUnit) -> String {
    let mut s = match (u.kind, &u.profile) {
        (UnitKind::Mig, Some(p)) => format!("MIG {p} on {}", u.device),
        (UnitKind::Mdev, Some(p)) => format!("vGPU {p} on {}", u.device),
        (UnitKind::Mdev, None) => format!("vGPU on {}", u.device),
        _ => format!("whole GPU {}", u.device),
    };
    if let Some(uuid) = &u.mdev_uuid {
        s.push_str(&format!(" (mdev {uuid})"));
    }
    s
}

impl SlurmFiles {
    /// Runs the checker over the model and over the text; the text when both find nothing.
    pub fn render(&self) -> Result<RenderedFiles, SlurmError> {
        let mut problems = check::check(&self.slurm_conf, &self.gres_conf, &self.cgroup_conf);
        let files = RenderedFiles {
            slurm_conf: self.slurm_conf.to_text(),
            gres_conf: self.gres_conf.to_text(),
            cgroup_conf: self.cgroup_conf.to_text(),
            slurmdbd_conf: self.slurmdbd_conf.to_text(),
        };
        problems.extend(check::check_text(&files.slurm_conf));
        problems.extend(check::check_gres_text(&files.gres_conf));
        problems.extend(check::check_slurmdbd_text(&files.slurmdbd_conf));
        if problems.is_empty() {
            Ok(files)
        } else {
            Err(SlurmError::Invalid(problems))
        }
    }
}

/// Builds, checks and renders the three files.
pub fn render(
    config: &ClusterConfig,
    deployment: &Deployment,
) -> Result<RenderedFiles, SlurmError> {
    build(config, deployment)?.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reserve() {
        assert_eq!(real_memory_mib(1), 716);
        assert_eq!(real_memory_mib(16), 15308);
        assert_eq!(real_memory_mib(0), 1);
    }

    #[test]
    fn sanitized_types() {
        assert_eq!(sanitize("1g.10gb+me"), "1g.10gb_me");
        assert_eq!(sanitize(" rtx 6000 "), "rtx_6000");
    }
}
