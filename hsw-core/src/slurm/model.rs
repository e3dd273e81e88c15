//! The typed model of the Slurm files hsw writes, and their text. Only the keys in [`Key`] (and the node,
//! partition, gres.conf and cgroup.conf attributes below) can be written: there is no free-form line.

use std::fmt::Write as _;

/// A `slurm.conf` setting hsw writes (Slurm 22.05 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// `ClusterName`.
    ClusterName,
    /// `SlurmctldHost`: `name(address)`.
    SlurmctldHost,
    /// `AuthType`.
    AuthType,
    /// `SlurmUser`.
    SlurmUser,
    /// `SlurmdUser`.
    SlurmdUser,
    /// `SlurmctldPort`.
    SlurmctldPort,
    /// `SlurmdPort`.
    SlurmdPort,
    /// `StateSaveLocation`.
    StateSaveLocation,
    /// `SlurmdSpoolDir`.
    SlurmdSpoolDir,
    /// `SlurmctldPidFile`.
    SlurmctldPidFile,
    /// `SlurmdPidFile`.
    SlurmdPidFile,
    /// `SlurmctldLogFile`.
    SlurmctldLogFile,
    /// `SlurmdLogFile`.
    SlurmdLogFile,
    /// `SchedulerType`.
    SchedulerType,
    /// `SelectType`.
    SelectType,
    /// `SelectTypeParameters`.
    SelectTypeParameters,
    /// `ProctrackType`.
    ProctrackType,
    /// `TaskPlugin`.
    TaskPlugin,
    /// `ReturnToService`.
    ReturnToService,
    /// `MpiDefault`.
    MpiDefault,
    /// `GresTypes`.
    GresTypes,
    /// `AccountingStorageType`.
    AccountingStorageType,
    /// `AccountingStorageHost`.
    AccountingStorageHost,
    /// `AccountingStoragePort`.
    AccountingStoragePort,
    /// `AccountingStorageTRES`.
    AccountingStorageTres,
    /// `AccountingStorageEnforce`.
    AccountingStorageEnforce,
    /// `JobAcctGatherType`.
    JobAcctGatherType,
    /// `PriorityType`.
    PriorityType,
    /// `PriorityWeightFairshare`.
    PriorityWeightFairshare,
}

impl Key {
    /// Every key, in the order hsw writes them.
    pub const ALL: [Key; 29] = [
        Key::ClusterName,
        Key::SlurmctldHost,
        Key::AuthType,
        Key::SlurmUser,
        Key::SlurmdUser,
        Key::SlurmctldPort,
        Key::SlurmdPort,
        Key::StateSaveLocation,
        Key::SlurmdSpoolDir,
        Key::SlurmctldPidFile,
        Key::SlurmdPidFile,
        Key::SlurmctldLogFile,
        Key::SlurmdLogFile,
        Key::SchedulerType,
        Key::SelectType,
        Key::SelectTypeParameters,
        Key::ProctrackType,
        Key::TaskPlugin,
        Key::ReturnToService,
        Key::MpiDefault,
        Key::GresTypes,
        Key::AccountingStorageType,
        Key::AccountingStorageHost,
        Key::AccountingStoragePort,
        Key::AccountingStorageTres,
        Key::AccountingStorageEnforce,
        Key::JobAcctGatherType,
        Key::PriorityType,
        Key::PriorityWeightFairshare,
    ];

    /// The key as Slurm spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Key::ClusterName => "ClusterName",
            Key::SlurmctldHost => "SlurmctldHost",
            Key::AuthType => "AuthType",
            Key::SlurmUser => "SlurmUser",
            Key::SlurmdUser => "SlurmdUser",
            Key::SlurmctldPort => "SlurmctldPort",
            Key::SlurmdPort => "SlurmdPort",
            Key::StateSaveLocation => "StateSaveLocation",
            Key::SlurmdSpoolDir => "SlurmdSpoolDir",
            Key::SlurmctldPidFile => "SlurmctldPidFile",
            Key::SlurmdPidFile => "SlurmdPidFile",
            Key::SlurmctldLogFile => "SlurmctldLogFile",
            Key::SlurmdLogFile => "SlurmdLogFile",
            Key::SchedulerType => "SchedulerType",
            Key::SelectType => "SelectType",
            Key::SelectTypeParameters => "SelectTypeParameters",
            Key::ProctrackType => "ProctrackType",
            Key::TaskPlugin => "TaskPlugin",
            Key::ReturnToService => "ReturnToService",
            Key::MpiDefault => "MpiDefault",
            Key::GresTypes => "GresTypes",
            Key::AccountingStorageType => "AccountingStorageType",
            Key::AccountingStorageHost => "AccountingStorageHost",
            Key::AccountingStoragePort => "AccountingStoragePort",
            Key::AccountingStorageTres => "AccountingStorageTRES",
            Key::AccountingStorageEnforce => "AccountingStorageEnforce",
            Key::JobAcctGatherType => "JobAcctGatherType",
            Key::PriorityType => "PriorityType",
            Key::PriorityWeightFairshare => "PriorityWeightFairshare",
        }
    }

    /// The key by its Slurm spelling (Slurm compares keys case-insensitively).
    pub fn parse(name: &str) -> Option<Key> {
        Key::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }
}

/// The attributes of a `NodeName=` line hsw writes.
pub const NODE_ATTRIBUTES: [&str; 7] = [
    "NodeName",
    "NodeAddr",
    "CPUs",
    "RealMemory",
    "Gres",
    "Features",
    "State",
];
/// The attributes of a `PartitionName=` line hsw writes.
pub const PARTITION_ATTRIBUTES: [&str; 6] = [
    "PartitionName",
    "Nodes",
    "Default",
    "DefaultTime",
    "MaxTime",
    "State",
];
/// The `slurmdbd.conf` keys hsw writes. `StoragePass` is not one of them: the playbook appends it on the
/// controller from the password file (it is never in hsw's rendered text, its logs or a command line).
pub const SLURMDBD_KEYS: [&str; 11] = [
    "AuthType",
    "DbdHost",
    "DbdPort",
    "SlurmUser",
    "LogFile",
    "PidFile",
    "StorageType",
    "StorageHost",
    "StoragePort",
    "StorageUser",
    "StorageLoc",
];
/// The attributes of a `gres.conf` line hsw writes.
pub const GRES_ATTRIBUTES: [&str; 5] = ["NodeName", "Name", "Type", "File", "Count"];
/// The `cgroup.conf` keys hsw writes.
pub const CGROUP_KEYS: [&str; 4] = [
    "CgroupPlugin",
    "ConstrainCores",
    "ConstrainRAMSpace",
    "ConstrainDevices",
];

/// `slurm.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmConf {
    /// Comment lines at the top (without `# `).
    pub comments: Vec<String>,
    /// The settings, in order.
    pub settings: Vec<(Key, String)>,
    /// The compute nodes.
    pub nodes: Vec<NodeDef>,
    /// The partitions.
    pub partitions: Vec<PartitionDef>,
}

impl SlurmConf {
    /// A setting's value.
    pub fn get(&self, key: Key) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A `NodeName=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDef {
    /// `NodeName`: the host name slurmd runs as.
    pub name: String,
    /// `NodeAddr`: always written (a name Slurm cannot resolve is dropped silently otherwise).
    pub addr: String,
    /// `CPUs`.
    pub cpus: u32,
    /// `RealMemory` in MiB.
    pub real_memory: u64,
    /// `Gres`: empty for none.
    pub gres: Vec<Gres>,
    /// `Features` (what `sinfo -o %f` shows, what `--constraint` selects): empty for none.
    pub features: Vec<String>,
}

/// One generic resource of a node: `name:type:count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gres {
    /// The gres name (`gpu`).
    pub name: String,
    /// Its type (a MIG profile such as `1g.10gb`, or a GPU model such as `a100-sxm4-80gb`).
    pub kind: String,
    /// How many.
    pub count: u32,
}

impl Gres {
    /// `name:type:count`.
    pub fn spec(&self) -> String {
        format!("{}:{}:{}", self.name, self.kind, self.count)
    }
}

/// A node's `Gres=` value: `gpu:1g.10gb:1,gpu:2g.20gb:1` (empty for none).
pub fn gres_spec(gres: &[Gres]) -> String {
    gres.iter().map(Gres::spec).collect::<Vec<_>>().join(",")
}

/// A `PartitionName=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDef {
    /// `PartitionName`.
    pub name: String,
    /// `Nodes`.
    pub nodes: Vec<String>,
    /// `Default=YES|NO`.
    pub default: bool,
    /// `DefaultTime`, when the partition has one.
    pub default_time: Option<String>,
    /// `MaxTime`.
    pub max_time: String,
}

/// `gres.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GresConf {
    /// Comment lines at the top (without `# `).
    pub comments: Vec<String>,
    /// The lines.
    pub lines: Vec<GresLine>,
}

/// One `gres.conf` line: a device file, or a count without files (simulated GPUs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GresLine {
    /// A comment line written just above it (without `# `).
    pub comment: Option<String>,
    /// `NodeName`.
    pub node: String,
    /// `Name` (`gpu`).
    pub name: String,
    /// `Type`.
    pub kind: String,
    /// `File` (a device file), or `None` with a `count`.
    pub file: Option<String>,
    /// `Count`, when there is no `File`.
    pub count: Option<u32>,
}

impl GresLine {
    /// How many units the line stands for.
    pub fn units(&self) -> u32 {
        if self.file.is_some() {
            1
        } else {
            self.count.unwrap_or(0)
        }
    }
}

/// `cgroup.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupConf {
    /// Comment lines at the top (without `# `).
    pub comments: Vec<String>,
    /// `key=value` lines; keys from [`CGROUP_KEYS`].
    pub settings: Vec<(&'static str, String)>,
}

fn comments(out: &mut String, lines: &[String]) {
    for l in lines {
        if l.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {l}");
        }
    }
}

/// A file of comments then `key=value` lines (cgroup.conf, slurmdbd.conf).
fn key_value_text(lines: &[String], settings: &[(&'static str, String)]) -> String {
    let mut out = String::new();
    comments(&mut out, lines);
    for (k, v) in settings {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "YES"
    } else {
        "NO"
    }
}

impl SlurmConf {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        comments(&mut out, &self.comments);
        for (k, v) in &self.settings {
            let _ = writeln!(out, "{}={v}", k.as_str());
        }
        if !self.nodes.is_empty() {
            out.push_str("\n# Compute nodes\n");
        }
        for n in &self.nodes {
            let _ = write!(
                out,
                "NodeName={} NodeAddr={} CPUs={} RealMemory={}",
                n.name, n.addr, n.cpus, n.real_memory
            );
            if !n.gres.is_empty() {
                let _ = write!(out, " Gres={}", gres_spec(&n.gres));
            }
            if !n.features.is_empty() {
                let _ = write!(out, " Features={}", n.features.join(","));
            }
            out.push_str(" State=UNKNOWN\n");
        }
        if !self.partitions.is_empty() {
            out.push_str("\n# Partitions\n");
        }
        for p in &self.partitions {
            let _ = write!(
                out,
                "PartitionName={} Nodes={} Default={}",
                p.name,
                p.nodes.join(","),
                yes_no(p.default),
            );
            if let Some(t) = &p.default_time {
                let _ = write!(out, " DefaultTime={t}");
            }
            let _ = writeln!(out, " MaxTime={} State=UP", p.max_time);
        }
        out
    }
}

/// `slurmdbd.conf`, without `StoragePass` (see [`SLURMDBD_KEYS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmdbdConf {
    /// Comment lines at the top (without `# `).
    pub comments: Vec<String>,
    /// `key=value` lines; keys from [`SLURMDBD_KEYS`].
    pub settings: Vec<(&'static str, String)>,
}

impl SlurmdbdConf {
    /// The file's text (the playbook appends `StoragePass=` on the controller).
    pub fn to_text(&self) -> String {
        key_value_text(&self.comments, &self.settings)
    }
}

impl GresConf {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        comments(&mut out, &self.comments);
        for l in &self.lines {
            if let Some(c) = &l.comment {
                let _ = writeln!(out, "# {c}");
            }
            let _ = write!(out, "NodeName={} Name={} Type={}", l.node, l.name, l.kind);
            match (&l.file, l.count) {
                (Some(f), _) => {
                    let _ = write!(out, " File={f}");
                }
                (None, Some(c)) => {
                    let _ = write!(out, " Count={c}");
                }
                (None, None) => {}
            }
            out.push('\n');
        }
        out
    }
}

impl CgroupConf {
    /// The file's text.
    pub fn to_text(&self) -> String {
        key_value_text(&self.comments, &self.settings)
    }
}
