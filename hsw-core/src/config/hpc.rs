//! The HPC cluster's site settings in `cluster.yaml` (`clusters.hpc`): shared storage, Slurm accounts,
//! users and QoS, and partitions that name the node groups they hold. Part of the serde model
//! ([`crate::config::model`] re-exports these types); the rules over them are in
//! [`crate::config::hpc_rules`].
//!
//! Every 1.0 file keeps its meaning: a partition given as a plain name holds every compute node with
//! `slurm_config.max_job_time` as its limit, exactly as before; what is absent (storage, accounts, users,
//! QoS) takes the defaults below.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::model::NodeGroup;

/// Where the controller exports home directories when `shared_storage.home` is not set.
pub const DEFAULT_SHARED_HOME: &str = "/home";
/// Where the controller exports shared scratch space when `shared_storage.scratch` is not set.
pub const DEFAULT_SHARED_SCRATCH: &str = "/scratch";
/// The node set of every compute node.
pub const NODE_SET_ALL: &str = "all";
/// The node set of the compute nodes with GPU units.
pub const NODE_SET_GPU: &str = "gpu";
/// The node set of the compute nodes without GPU units.
pub const NODE_SET_CPU: &str = "cpu";
/// The HPC cluster's compute node group, by its key in `clusters.hpc` (a node set of its own).
pub const COMPUTE_GROUP: &str = "compute_nodes";
/// Every node set a partition may name.
pub const NODE_SETS: [&str; 4] = [NODE_SET_ALL, NODE_SET_GPU, NODE_SET_CPU, COMPUTE_GROUP];
/// The lowest uid of an HPC user: below 1000 are Debian's system accounts, and 1000 is the login user
/// (`global.ssh.user`) that cloud-init creates first.
pub const MIN_USER_UID: u32 = 1001;
/// The highest uid of an HPC user (Debian's `UID_MAX`; 65534 is `nobody`).
pub const MAX_USER_UID: u32 = 60000;

/// Home directories and scratch space the controller exports over NFSv4 to the HPC network (root squashed)
/// and every compute node mounts at boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedStorage {
    /// Export and mount them (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The shared home directories (default `/home`), an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9._/-]*$"))]
    pub home: Option<String>,
    /// The shared scratch space (default `/scratch`), an absolute path; everyone may write, files are kept by
    /// their owner (mode 1777).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9._/-]*$"))]
    pub scratch: Option<String>,
}

/// A Slurm account (`sacctmgr add account`), which users charge their jobs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmAccount {
    /// The account's name: lowercase letters, digits, `_` and `-` (Slurm keeps account names lowercase).
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_-]{0,31}$"))]
    pub name: String,
    /// Its share of the cluster for fairshare priority (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub fairshare: Option<u32>,
    /// The parent account (default: Slurm's `root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The QoS (names from `qos`) the account's users may use; the first is their default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qos: Vec<String>,
}

/// A person who logs in to the HPC cluster: a Unix user with the same uid and gid on every HPC VM, and a
/// Slurm user in one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HpcUser {
    /// The login name.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_-]{0,31}$"))]
    pub name: String,
    /// The uid, also the gid of the user's own group: 1001 to 60000, unique.
    pub uid: u32,
    /// The Slurm account (one of `accounts`) the user's jobs are charged to.
    pub account: String,
    /// An SSH public key authorized for the user (one `authorized_keys` line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+( [^\n]*)?$"))]
    pub ssh_public_key: Option<String>,
}

/// A Slurm quality of service (`sacctmgr add qos`): limits on the jobs that use it. A job over a limit is
/// refused when it is submitted (`Flags=DenyOnLimit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Qos {
    /// The QoS's name.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_-]{0,31}$"))]
    pub name: String,
    /// The longest wall time of one job, in Slurm's time format (e.g. `01:00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall: Option<String>,
    /// The most GPUs one user's running jobs may hold together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65536))]
    pub max_gpus_per_user: Option<u32>,
}

/// A partition: a plain name (format 1.0: every compute node, `max_job_time` as its limit), or a partition
/// with its own node sets and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PartitionSpec {
    /// A partition name: every compute node, `slurm_config.max_job_time` as `MaxTime`.
    Name(String),
    /// A partition with its own nodes and limits.
    Full(Partition),
}

/// A partition with its own nodes and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// The partition's name.
    pub name: String,
    /// The node sets it holds: `all` (every compute node, the default), `gpu` (those with GPU units), `cpu`
    /// (those without) or a node group by its key (`compute_nodes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// `DefaultTime`: a job's limit when it asks for none (Slurm's time format). Default: `max_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_time: Option<String>,
    /// `MaxTime` (Slurm's time format). Default: `slurm_config.max_job_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time: Option<String>,
}

impl SharedStorage {
    /// Whether the shared storage is on (the default).
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The home directories' path.
    pub fn home_path(&self) -> &str {
        self.home.as_deref().unwrap_or(DEFAULT_SHARED_HOME)
    }

    /// The scratch space's path.
    pub fn scratch_path(&self) -> &str {
        self.scratch.as_deref().unwrap_or(DEFAULT_SHARED_SCRATCH)
    }
}

impl SlurmAccount {
    /// The fairshare (default 1).
    pub fn fairshare(&self) -> u32 {
        self.fairshare.unwrap_or(1)
    }

    /// The parent account (default `root`).
    pub fn parent_name(&self) -> &str {
        self.parent.as_deref().unwrap_or("root")
    }
}

impl PartitionSpec {
    /// The partition's name.
    pub fn name(&self) -> &str {
        match self {
            PartitionSpec::Name(n) => n,
            PartitionSpec::Full(p) => &p.name,
        }
    }

    /// The JSON pointer of its name, under the partition at `at`.
    pub fn name_pointer(&self, at: &str) -> String {
        match self {
            PartitionSpec::Name(_) => at.to_owned(),
            PartitionSpec::Full(_) => format!("{at}/name"),
        }
    }

    /// The node sets it names (`all` for a plain name or none given).
    pub fn node_sets(&self) -> Vec<&str> {
        match self {
            PartitionSpec::Full(p) if !p.nodes.is_empty() => {
                p.nodes.iter().map(String::as_str).collect()
            }
            _ => vec![NODE_SET_ALL],
        }
    }

    /// `MaxTime`: its own, else `max_job_time`.
    pub fn max_time<'a>(&'a self, max_job_time: &'a str) -> &'a str {
        match self {
            PartitionSpec::Full(Partition {
                max_time: Some(t), ..
            }) => t,
            _ => max_job_time,
        }
    }

    /// `DefaultTime`, when it has one.
    pub fn default_time(&self) -> Option<&str> {
        match self {
            PartitionSpec::Full(p) => p.default_time.as_deref(),
            PartitionSpec::Name(_) => None,
        }
    }
}

/// A Slurm time (the formats [`crate::config::rules::is_slurm_time`] accepts) in whole minutes, rounded up as
/// Slurm does; `None` for `UNLIMITED`/`INFINITE` or a text that is no Slurm time.
pub fn slurm_minutes(text: &str) -> Option<u64> {
    if !crate::config::rules::is_slurm_time(text)
        || text.eq_ignore_ascii_case("unlimited")
        || text.eq_ignore_ascii_case("infinite")
    {
        return None;
    }
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (Some(d.parse::<u64>().ok()?), r),
        None => (None, text),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let seconds = match (days, parts.as_slice()) {
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(seconds.div_ceil(60))
}

/// Whether the node set `set` holds the compute group `group` (every compute VM is in one group, so a set
/// holds all of the group's nodes or none). `None` for a name that is no node set.
pub fn set_holds(set: &str, group: &NodeGroup) -> Option<bool> {
    match set {
        NODE_SET_ALL | COMPUTE_GROUP => Some(true),
        NODE_SET_GPU => Some(group.gpu_units_per_node() > 0),
        NODE_SET_CPU => Some(group.gpu_units_per_node() == 0),
        _ => None,
    }
}

/// Whether a partition holds the compute group's nodes: some node set it names holds them.
pub fn partition_holds(partition: &PartitionSpec, group: &NodeGroup) -> bool {
    partition
        .node_sets()
        .into_iter()
        .any(|s| set_holds(s, group) == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(gpu: bool) -> NodeGroup {
        NodeGroup {
            count: 2,
            cpu_cores: 1,
            memory_gb: 1,
            disk_gb: 8,
            gpu_enabled: gpu,
            gpus_per_node: None,
            ip_range: "10.0.0.2-3".into(),
            hosts: Vec::new(),
        }
    }

    #[test]
    fn node_sets_hold_what_they_say() {
        let gpu = group(true);
        let cpu = group(false);
        assert_eq!(set_holds("gpu", &gpu), Some(true));
        assert_eq!(set_holds("gpu", &cpu), Some(false));
        assert_eq!(set_holds("cpu", &cpu), Some(true));
        assert_eq!(set_holds("cpu", &gpu), Some(false));
        assert_eq!(set_holds("all", &cpu), Some(true));
        assert_eq!(set_holds("compute_nodes", &gpu), Some(true));
        assert_eq!(set_holds("gpus", &gpu), None);
        // A plain name (format 1.0) holds every compute node.
        assert!(partition_holds(&PartitionSpec::Name("debug".into()), &cpu));
        let only_gpu = PartitionSpec::Full(Partition {
            name: "g".into(),
            nodes: vec!["gpu".into()],
            default_time: None,
            max_time: None,
        });
        assert!(partition_holds(&only_gpu, &gpu));
        assert!(!partition_holds(&only_gpu, &cpu));
        assert_eq!(only_gpu.max_time("1:00:00"), "1:00:00");
    }

    #[test]
    fn slurm_times_in_minutes() {
        for (t, m) in [
            ("30", Some(30)),
            ("30:30", Some(31)),
            ("01:00:00", Some(60)),
            ("2-00", Some(2880)),
            ("1-01:30", Some(1530)),
            ("1-00:00:01", Some(1441)),
            ("UNLIMITED", None),
            ("1h", None),
        ] {
            assert_eq!(slurm_minutes(t), m, "{t}");
        }
    }

    #[test]
    fn storage_defaults() {
        let s = SharedStorage::default();
        assert!(s.is_enabled());
        assert_eq!((s.home_path(), s.scratch_path()), ("/home", "/scratch"));
    }
}
