//! The serde model of `cluster.yaml` (format version "1.0").
//!
//! These types are the file's shape and nothing more: they are deserialized once at the edge
//! (see [`crate::config::load`]) and the JSON Schema in `schemas/cluster.schema.json` is generated
//! from them (doc comments become the schema's `description`s, which editors show through the
//! `# yaml-language-server: $schema=` modeline). Unknown keys are rejected everywhere.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::config::hpc::{HpcUser, Partition, PartitionSpec, Qos, SharedStorage, SlurmAccount};

/// The Kubernetes release of hsw's offline bundle (`hsw-cli bundle build`, `source: bundle`).
pub const KUBERNETES_BUNDLE_RELEASE: &str = "1.34.4";

/// Its minor version (`kubernetes_config.version`'s form): [`KUBERNETES_BUNDLE_RELEASE`] without the patch.
pub fn kubernetes_bundle_minor() -> &'static str {
    KUBERNETES_BUNDLE_RELEASE
        .rsplit_once('.')
        .map_or(KUBERNETES_BUNDLE_RELEASE, |(m, _)| m)
}

/// The `$id` of the cluster.yaml schema.
pub const SCHEMA_ID: &str = "https://hyperscaler.dev/schemas/cluster-1.0.schema.json";

/// The cluster keys, in the order hsw handles them everywhere (plan, layout, inventory): `hpc`, then `cloud`.
pub const CLUSTER_KEYS: [&str; 2] = ["hpc", "cloud"];

/// The libvirt connection URI when `host.libvirt_uri` is not set.
pub const DEFAULT_LIBVIRT_URI: &str = "qemu:///system";

/// The directory of VM disks, seeds and base images when `host.pool_dir` is not set.
pub const DEFAULT_POOL_DIR: &str = "/var/lib/hsw/images";

/// The provider's GPU state directory when its configuration names none: `state` beside the pool directory
/// (`<pool>/../state`; the pool itself when it has no parent).
pub fn default_gpu_state_dir(pool_dir: &std::path::Path) -> std::path::PathBuf {
    pool_dir.parent().unwrap_or(pool_dir).join("state")
}

/// An hsw cluster definition: the networks, GPUs and the HPC (Slurm) and cloud (Kubernetes)
/// clusters that run side by side on one workstation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hsw cluster.yaml")]
pub struct ClusterConfig {
    /// Format version of this file. Only "1.0" exists.
    #[schemars(regex(pattern = r"^1\.0$"))]
    pub version: String,
    /// Who this cluster definition is and what it is for.
    pub metadata: Metadata,
    /// Host-side settings: libvirt connection, where disks live, the base images the VMs boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostSettings>,
    /// Several hosts, by name (instead of `host`): each with its libvirt connection (`qemu:///system` for the
    /// local one, `qemu+ssh://root@HOST/system?known_hosts=/abs/file` with a pinned known_hosts for the others),
    /// pool directory, accelerator and GPU backend. With two or more, every VM group (`host`/`hosts`) and GPU
    /// device (`host`) says where it is. A name is a DNS label. Placing VMs on several hosts is validated;
    /// `generate` and `up` do one host only so far.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub hosts: BTreeMap<String, HostSettings>,
    /// Settings shared by both clusters: networks, GPU inventory and allocation, SSH, security, monitoring.
    pub global: Global,
    /// The clusters to build. At least one of `hpc` and `cloud`.
    pub clusters: Clusters,
}

/// Name and description of the cluster definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Short name: a DNS label (lowercase letters, digits, hyphens; at most 40 characters). VM names are prefixed with it.
    #[schemars(regex(pattern = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$"))]
    pub name: String,
    /// Free text shown in generated files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Host-side settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    /// libvirt connection URI the provider uses (default `qemu:///system`): `qemu:///system`,
    /// `qemu+unix:///system?socket=/path`, `qemu+ssh://[user@]host[:port]/system` (parameters `keyfile`,
    /// `known_hosts`) or `test:///default`; nothing else (no `ext` transport, which runs a program).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(qemu|qemu\+unix|qemu\+ssh|test)://[^\s'`$;|<>]*$"))]
    pub libvirt_uri: Option<String>,
    /// Directory that holds VM disks, cloud-init seeds and base images (default `/var/lib/hsw/images`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9._/-]*$"))]
    pub pool_dir: Option<String>,
    /// Hypervisor acceleration for the VMs: `auto` uses KVM when it can run guests, else TCG emulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<Accelerator>,
    /// Where GPUs come from: `nvml` (the NVIDIA driver), `simulated` (a faithful simulation for machines without NVIDIA GPUs: MIG rules enforced, nothing passed to VMs), or `auto` (NVML when a GPU answers, else simulated). Default `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_backend: Option<GpuBackend>,
    /// Base (golden) images per cluster. When absent, hsw builds its own Debian 12 images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Images>,
}

/// Hypervisor acceleration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// KVM when usable, otherwise TCG.
    Auto,
    /// Hardware virtualization (KVM) only.
    Kvm,
    /// Software emulation (QEMU TCG) only.
    Tcg,
}

/// Source of GPU state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GpuBackend {
    /// NVML when a GPU answers, else simulated.
    Auto,
    /// The NVIDIA driver through NVML.
    Nvml,
    /// Simulated GPUs (state kept by hsw; nothing reaches real hardware).
    Simulated,
}

/// Base images per cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// qcow2 base image for the HPC cluster's VMs (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9._/-]*$"))]
    pub hpc: Option<String>,
    /// qcow2 base image for the cloud cluster's VMs (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9._/-]*$"))]
    pub cloud: Option<String>,
}

/// Settings shared by both clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// The virtual networks, by name. Each cluster uses `<cluster>_network` unless it names another with `network`.
    #[schemars(length(min = 1))]
    pub networks: BTreeMap<String, Network>,
    /// The host's GPUs and how they are shared between the clusters. May be omitted when no node is GPU-enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_allocation: Option<GpuAllocation>,
    /// SSH access to the VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSettings>,
    /// Security baseline applied to every VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// Monitoring stack settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,
}

/// One virtual network (a libvirt network with its own bridge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// IPv4 network in CIDR notation, e.g. `192.168.100.0/24`. Must be the network address (host bits zero).
    #[schemars(regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$"))]
    pub subnet: String,
    /// Host bridge name (Linux interface name: at most 15 characters, letters, digits, `-`, `_`, `.`).
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,15}$"))]
    pub bridge: String,
    /// Address of the host on this network. Default: the first usable address of `subnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"))]
    pub gateway: Option<String>,
    /// Forwarding mode: `isolated` (no outside access, the default), `nat`, `route` or `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NetworkMode>,
    /// DNS domain of the VMs on this network (default `<cluster>.<metadata.name>.internal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
    ))]
    pub domain: Option<String>,
    /// Interface MTU in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 576, max = 9216))]
    pub mtu: Option<u32>,
}

/// libvirt forwarding mode of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// No forwarding: VMs reach each other and the host only.
    Isolated,
    /// NAT to the host's uplink.
    Nat,
    /// Routed, without NAT.
    Route,
    /// Routed, and libvirt adds no firewall rules.
    Open,
}

/// The host's GPUs and their allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuAllocation {
    /// The physical GPUs hsw may use.
    pub devices: Vec<GpuDevice>,
    /// `mig`: only MIG slices; `whole`: only whole GPUs (passthrough); `hybrid`: MIG-capable GPUs are sliced, the others passed through whole.
    pub strategy: Strategy,
    /// Number of MIG GPU instances per cluster (`hpc`, `cloud`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_slices: Option<PerCluster<u32>>,
    /// Which MIG profiles each cluster's instances may use (e.g. `hpc: ["1g.10gb"]`). Default: any profile allowed on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_profiles: Option<PerCluster<Vec<String>>>,
    /// Number of whole GPUs (PCI passthrough) per cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_gpus: Option<PerCluster<u32>>,
    /// How each cluster's units reach its VMs. Default: MIG slices as MIG-backed vGPUs (the type from hsw's catalog), whole GPUs by PCI passthrough; with `host.gpu_backend: simulated` nothing reaches a VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<PerCluster<UnitAttach>>,
}

/// How one cluster's GPU units reach its VMs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitAttach {
    /// How a MIG slice reaches a VM: `vgpu` (a MIG-backed NVIDIA vGPU on the slice; the default and the only way: a MIG instance cannot be passed through by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<MigAttach>,
    /// How a whole GPU reaches a VM: `passthrough` (vfio-pci; the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole: Option<WholeAttach>,
    /// The vGPU type per MIG profile, e.g. `{"1g.10gb": "A100DX-1-10C"}` (the name the host driver lists, without `NVIDIA `/`GRID `). Default: hsw's catalog for the GPU's model. A type must belong to the model of every GPU that profile is planned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vgpu_types: Option<BTreeMap<String, String>>,
}

/// How a MIG slice reaches a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MigAttach {
    /// A MIG-backed vGPU (NVIDIA vGPU for Compute, a `-<g>-<FB>C` type) whose parent is the VF that holds the slice.
    Vgpu,
}

/// How a whole GPU reaches a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WholeAttach {
    /// PCI passthrough (vfio-pci) of the whole GPU.
    Passthrough,
}

/// A value per cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PerCluster<T> {
    /// For the HPC (Slurm) cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpc: Option<T>,
    /// For the cloud (Kubernetes) cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<T>,
}

/// GPU sharing strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// MIG slices only.
    Mig,
    /// Whole GPUs only.
    Whole,
    /// MIG slices on MIG-capable GPUs, whole GPUs from the others.
    Hybrid,
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuDevice {
    /// Your name for this GPU, unique (e.g. `GPU-0`).
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"))]
    pub id: String,
    /// PCI address `DDDD:BB:DD.F` (domain, bus, device, function in hex), unique.
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]$"))]
    pub pci_address: String,
    /// Model name as nvidia-smi reports it (e.g. `NVIDIA A100-SXM4-80GB`, `NVIDIA H100 80GB HBM3`).
    pub model: String,
    /// Whether the GPU supports MIG. Unknown models are taken at their word, with a warning.
    #[serde(default)]
    pub mig_capable: bool,
    /// MIG profiles that may be created on this GPU (names from the model's profile table). Default: all but `+me` variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_mig_profiles: Option<Vec<String>>,
    /// Force how a GPU is used under `hybrid`: `mig` or `whole`. Default: `mig` when MIG-capable, else `whole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DeviceMode>,
    /// The host (a name in `hosts`) this GPU sits in; required with two or more hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// How one GPU is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceMode {
    /// Sliced into MIG instances.
    Mig,
    /// Passed through whole.
    Whole,
}

/// SSH access to the VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Login user created in every VM (default `hsw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_-]{0,31}$"))]
    pub user: Option<String>,
    /// Extra public keys authorized for that user, besides the per-cluster keys hsw generates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_keys: Vec<String>,
}

/// Security baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Allow SSH password login (default false: keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_password_auth: Option<bool>,
    /// Block traffic between the HPC and cloud networks with nftables (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_networks: Option<bool>,
    /// Enable auditd audit logging in the VMs (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<bool>,
    /// Enable unattended security upgrades in the VMs (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unattended_upgrades: Option<bool>,
}

/// Monitoring settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    /// Deploy the monitoring stack (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Prometheus retention, e.g. `15d`, `12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*(ms|s|m|h|d|w|y)$"))]
    pub prometheus_retention: Option<String>,
    /// Run the NVIDIA DCGM exporter on GPU nodes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcgm_exporter: Option<bool>,
}

/// The clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1))]
pub struct Clusters {
    /// The HPC cluster: a Slurm controller and compute nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpc: Option<HpcCluster>,
    /// The cloud cluster: a Kubernetes control plane and CPU and GPU workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudCluster>,
}

/// The HPC (Slurm) cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HpcCluster {
    /// Name of the network in `global.networks` (default `hpc_network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The Slurm controller (slurmctld) VM.
    pub controller: SingleNode,
    /// The Slurm compute (slurmd) VMs.
    pub compute_nodes: NodeGroup,
    /// Slurm settings.
    pub slurm_config: SlurmConfig,
    /// Home directories and scratch space shared over NFS from the controller (on by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_storage: Option<SharedStorage>,
    /// Slurm accounts (with their fairshare), kept in slurmdbd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<SlurmAccount>,
    /// The people who use the cluster: Unix users on every HPC VM and Slurm users of an account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<HpcUser>,
    /// Slurm QoS: limits that accounts grant their users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qos: Vec<Qos>,
}

/// The cloud (Kubernetes) cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudCluster {
    /// Name of the network in `global.networks` (default `cloud_network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The Kubernetes control-plane VM.
    pub control_plane: SingleNode,
    /// The Kubernetes worker VMs.
    pub worker_nodes: WorkerNodes,
    /// Kubernetes settings.
    pub kubernetes_config: KubernetesConfig,
    /// MLflow's tracking server (default: `runtime: service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowConfig>,
}

/// MLflow's tracking server: its database is PostgreSQL on the first CPU worker (else the control plane), with
/// basic authentication (users in PostgreSQL too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlflowConfig {
    /// Where it runs: `service` (default; a systemd unit beside PostgreSQL, from the venv the cloud image
    /// carries, artifacts on that VM's disk: needs no internet), `kubernetes` (a Deployment with MinIO for the
    /// artifacts; their images are pulled: `up --online`) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<MlflowRuntime>,
}

/// Where MLflow's tracking server runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MlflowRuntime {
    /// A systemd unit on the PostgreSQL VM (offline).
    #[default]
    Service,
    /// A Deployment on Kubernetes, with MinIO (online).
    Kubernetes,
    /// No MLflow.
    None,
}

impl MlflowRuntime {
    /// The name as cluster.yaml writes it (and `mlops_mlflow_runtime` in the playbooks).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Kubernetes => "kubernetes",
            Self::None => "none",
        }
    }
}

/// Kubernetes workers, CPU-only and GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1))]
pub struct WorkerNodes {
    /// Workers without GPUs (label `compute=cpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_workers: Option<NodeGroup>,
    /// Workers with GPU units (label `compute=gpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_workers: Option<NodeGroup>,
}

/// One VM with a fixed address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SingleNode {
    /// Virtual CPUs.
    #[schemars(range(min = 1, max = 256))]
    pub cpu_cores: u32,
    /// Memory in GiB.
    #[schemars(range(min = 1, max = 4096))]
    pub memory_gb: u32,
    /// System disk size in GiB (a copy-on-write overlay: only what the VM writes takes space).
    #[schemars(range(min = 2, max = 65536))]
    pub disk_gb: u32,
    /// IPv4 address inside the cluster's subnet.
    #[schemars(regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"))]
    pub ip_address: String,
    /// The host (a name in `hosts`) it runs on; required with two or more hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A group of identical VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    /// Number of VMs.
    #[schemars(range(min = 1, max = 4096))]
    pub count: u32,
    /// Virtual CPUs per VM.
    #[schemars(range(min = 1, max = 256))]
    pub cpu_cores: u32,
    /// Memory per VM in GiB.
    #[schemars(range(min = 1, max = 4096))]
    pub memory_gb: u32,
    /// System disk size per VM in GiB.
    #[schemars(range(min = 2, max = 65536))]
    pub disk_gb: u32,
    /// Whether each VM gets GPU units (MIG slices or whole GPUs).
    #[serde(default)]
    pub gpu_enabled: bool,
    /// GPU units per VM when `gpu_enabled` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub gpus_per_node: Option<u32>,
    /// Addresses of the VMs: one address (`192.168.100.11`), a last-octet range (`192.168.100.11-14`) or a full range (`172.20.1.1-172.20.4.250`). Ascending, at least `count` addresses.
    #[schemars(regex(
        pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}(-([0-9]{1,3}|[0-9]{1,3}(\.[0-9]{1,3}){3}))?$"
    ))]
    pub ip_range: String,
    /// The hosts (names in `hosts`) its VMs run on, in turn: VM 1 on the first, VM 2 on the second, and so on
    /// round the list (one name: all on that host). Required with two or more hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub hosts: Vec<String>,
}

/// Slurm settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// Slurm `ClusterName` (default: `metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{0,39}$"))]
    pub cluster_name: Option<String>,
    /// The partitions: a name (every compute node, `max_job_time` as its limit) or `{name, nodes, default_time,
    /// max_time}` with the node sets it holds (`all`, `gpu`, `cpu` or `compute_nodes`).
    #[schemars(length(min = 1))]
    pub partitions: Vec<PartitionSpec>,
    /// The default partition: one of `partitions`.
    pub default_partition: String,
    /// Partition `MaxTime` in Slurm's format: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`, or `UNLIMITED` (a partition's own `max_time` wins).
    pub max_job_time: String,
}

/// Kubernetes settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Container network plugin. `bridge` needs no internet (a bridge per node, routes between the nodes,
    /// Debian's CNI plugins); `calico`, `flannel` and `cilium` are installed from the internet (`up --online`).
    pub cni: Cni,
    /// Where kubelet, kubeadm, kubectl and the control plane's images come from: `bundle` (default; hsw's
    /// offline bundle, built from source modules on the host by `hsw-cli bundle build` and baked into the cloud
    /// image, nothing pulled) or `packages` (pkgs.k8s.io and registry.k8s.io: needs the internet, `up --online`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<KubernetesSource>,
    /// Ingress controller.
    pub ingress: Ingress,
    /// Default storage class.
    pub storage_class: StorageClass,
    /// Kubernetes minor version to install, e.g. `1.30` (with `source: bundle`, the bundle's: `1.34`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^1\.[0-9]{2}$"))]
    pub version: Option<String>,
    /// Pod network CIDR (default `10.244.0.0/16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$"))]
    pub pod_subnet: Option<String>,
    /// Service CIDR (default `10.96.0.0/12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$"))]
    pub service_subnet: Option<String>,
}

/// Where Kubernetes comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesSource {
    /// hsw's offline bundle (`hsw-cli bundle build`), in the cloud image.
    #[default]
    Bundle,
    /// pkgs.k8s.io and registry.k8s.io (needs the internet).
    Packages,
}

/// Container network plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    /// A Linux bridge on each node's pod CIDR, routes between the nodes, kube-proxy as a systemd unit (offline;
    /// needs `source: bundle`).
    Bridge,
    /// Calico.
    Calico,
    /// Flannel.
    Flannel,
    /// Cilium.
    Cilium,
}

impl Cni {
    /// The name as cluster.yaml writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cni::Bridge => "bridge",
            Cni::Calico => "calico",
            Cni::Flannel => "flannel",
            Cni::Cilium => "cilium",
        }
    }
}

/// Ingress controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ingress {
    /// ingress-nginx.
    Nginx,
    /// Traefik.
    Traefik,
    /// No ingress controller.
    None,
}

/// Default storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StorageClass {
    /// Rancher local-path provisioner.
    LocalPath,
    /// NFS subdir provisioner backed by the host.
    Nfs,
    /// OpenEBS hostpath.
    OpenebsHostpath,
}

impl ClusterConfig {
    /// The settings of the one host: `host`, or the only entry of `hosts` (`None` with none, or with two or more
    /// hosts: then [`ClusterConfig::libvirt_uri`] and its siblings give the defaults, and `generate` refuses).
    pub fn single_host(&self) -> Option<&HostSettings> {
        match (&self.host, self.hosts.len()) {
            (Some(h), _) => Some(h),
            (None, 1) => self.hosts.values().next(),
            _ => None,
        }
    }

    /// The libvirt connection URI: the [single host](ClusterConfig::single_host)'s `libvirt_uri`, else
    /// [`DEFAULT_LIBVIRT_URI`].
    pub fn libvirt_uri(&self) -> &str {
        self.single_host()
            .and_then(|h| h.libvirt_uri.as_deref())
            .unwrap_or(DEFAULT_LIBVIRT_URI)
    }

    /// The pool directory: the single host's `pool_dir`, else [`DEFAULT_POOL_DIR`].
    pub fn pool_dir(&self) -> &str {
        self.single_host()
            .and_then(|h| h.pool_dir.as_deref())
            .unwrap_or(DEFAULT_POOL_DIR)
    }

    /// The GPUs of `global.gpu_allocation.devices` (none without `gpu_allocation`).
    pub fn gpu_devices(&self) -> &[GpuDevice] {
        self.global
            .gpu_allocation
            .as_ref()
            .map_or(&[][..], |a| a.devices.as_slice())
    }

    /// The login user created in every VM: `global.ssh.user`, else `hsw`
    /// ([`crate::ansible::inventory::DEFAULT_USER`]).
    pub fn login_user(&self) -> &str {
        self.global
            .ssh
            .as_ref()
            .and_then(|s| s.user.as_deref())
            .filter(|u| !u.is_empty())
            .unwrap_or(crate::ansible::inventory::DEFAULT_USER)
    }

    /// Whether the monitoring stack is deployed: `global.monitoring.enabled`, else true.
    pub fn monitoring_enabled(&self) -> bool {
        self.global
            .monitoring
            .as_ref()
            .and_then(|m| m.enabled)
            .unwrap_or(true)
    }

    /// Whether nftables keeps the clusters apart: `global.security.segment_networks`, else true.
    pub fn segment_networks(&self) -> bool {
        self.global
            .security
            .as_ref()
            .and_then(|s| s.segment_networks)
            .unwrap_or(true)
    }

    /// Where the cloud cluster's Kubernetes comes from (`None`: no cloud cluster).
    pub fn kubernetes_source(&self) -> Option<KubernetesSource> {
        self.clusters
            .cloud
            .as_ref()
            .map(|c| c.kubernetes_config.source.unwrap_or_default())
    }

    /// Where MLflow's tracking server runs (`None`: no cloud cluster).
    pub fn mlflow_runtime(&self) -> Option<MlflowRuntime> {
        self.clusters.cloud.as_ref().map(|c| {
            c.mlflow
                .as_ref()
                .and_then(|m| m.runtime)
                .unwrap_or_default()
        })
    }

    /// Why the cloud cluster cannot come up without the internet (`None`: it can, or there is no cloud
    /// cluster): its Kubernetes source is `packages`, its CNI is one whose images are pulled, or MLflow runs on
    /// Kubernetes (MinIO's and MLflow's images are pulled).
    pub fn kubernetes_needs_internet(&self) -> Option<String> {
        let k = &self.clusters.cloud.as_ref()?.kubernetes_config;
        if self.mlflow_runtime() == Some(MlflowRuntime::Kubernetes) {
            return Some(
                "clusters.cloud.mlflow.runtime is kubernetes (MinIO's and MLflow's images come from the internet)"
                    .into(),
            );
        }
        if self.kubernetes_source() == Some(KubernetesSource::Packages) {
            return Some(
                "clusters.cloud.kubernetes_config.source is packages (pkgs.k8s.io, registry.k8s.io)".into(),
            );
        }
        (k.cni != Cni::Bridge).then(|| {
            format!(
                "clusters.cloud.kubernetes_config.cni is {} (its images come from the internet)",
                k.cni.as_str()
            )
        })
    }

    /// Whether SSH takes passwords: `global.security.ssh_password_auth`, else false.
    pub fn ssh_password_auth(&self) -> bool {
        self.global
            .security
            .as_ref()
            .and_then(|s| s.ssh_password_auth)
            .unwrap_or(false)
    }

    /// Whether libvirt forwards packets between the two clusters' networks: they share one network, or both
    /// are in `route` or `open` mode (`isolated` forwards nothing, `nat` takes no connection from outside).
    /// Where it does not, only libvirt keeps the clusters apart and the monitoring server cannot scrape the
    /// other cluster.
    pub fn clusters_routed(&self) -> bool {
        let (Some(hpc), Some(cloud)) = (
            crate::config::rules::cluster_network(self, "hpc"),
            crate::config::rules::cluster_network(self, "cloud"),
        ) else {
            return false;
        };
        let routed = |n: &str| {
            self.global
                .networks
                .get(n)
                .and_then(|n| n.mode)
                .is_some_and(|m| matches!(m, NetworkMode::Route | NetworkMode::Open))
        };
        hpc == cloud || (routed(hpc) && routed(cloud))
    }

    /// The GPU backend: the single host's `gpu_backend`, else [`GpuBackend::Auto`].
    pub fn gpu_backend(&self) -> GpuBackend {
        self.single_host()
            .and_then(|h| h.gpu_backend)
            .unwrap_or(GpuBackend::Auto)
    }

    /// The hypervisor acceleration: the single host's `accelerator`, else [`Accelerator::Auto`].
    pub fn accelerator(&self) -> Accelerator {
        self.single_host()
            .and_then(|h| h.accelerator)
            .unwrap_or(Accelerator::Auto)
    }

    /// How the cluster with this key attaches its units (`global.gpu_allocation.attach.<cluster>`, else the
    /// defaults).
    pub fn unit_attach(&self, cluster: &str) -> UnitAttach {
        self.global
            .gpu_allocation
            .as_ref()
            .and_then(|a| a.attach.as_ref())
            .and_then(|a| a.get(cluster))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the configuration defines the cluster with this key (`hpc` or `cloud`).
    pub fn has_cluster(&self, key: &str) -> bool {
        match key {
            "hpc" => self.clusters.hpc.is_some(),
            "cloud" => self.clusters.cloud.is_some(),
            _ => false,
        }
    }

    /// The keys of the clusters the configuration defines, in [`CLUSTER_KEYS`] order.
    pub fn present_clusters(&self) -> Vec<&'static str> {
        CLUSTER_KEYS
            .into_iter()
            .filter(|c| self.has_cluster(c))
            .collect()
    }
}

impl Accelerator {
    /// `auto`, `kvm` or `tcg`, as in cluster.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Auto => "auto",
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

impl GpuBackend {
    /// `auto`, `nvml` or `simulated`, as in cluster.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            GpuBackend::Auto => "auto",
            GpuBackend::Nvml => "nvml",
            GpuBackend::Simulated => "simulated",
        }
    }
}

impl HpcCluster {
    /// The network this cluster's VMs attach to.
    pub fn network_name(&self) -> &str {
        self.network.as_deref().unwrap_or("hpc_network")
    }

    /// The shared storage settings (defaults when absent: on, `/home` and `/scratch`).
    pub fn shared_storage(&self) -> SharedStorage {
        self.shared_storage.clone().unwrap_or_default()
    }
}

impl CloudCluster {
    /// The network this cluster's VMs attach to.
    pub fn network_name(&self) -> &str {
        self.network.as_deref().unwrap_or("cloud_network")
    }
}

impl NodeGroup {
    /// GPU units per VM (0 when not GPU-enabled).
    pub fn gpu_units_per_node(&self) -> u32 {
        if self.gpu_enabled {
            self.gpus_per_node.unwrap_or(1)
        } else {
            0
        }
    }
}

impl<T> PerCluster<T> {
    /// The value for a cluster by its key (`hpc` or `cloud`).
    pub fn get(&self, cluster: &str) -> Option<&T> {
        match cluster {
            "hpc" => self.hpc.as_ref(),
            "cloud" => self.cloud.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_gpu_state_is_beside_the_pool() {
        assert_eq!(
            default_gpu_state_dir(Path::new("/var/lib/hsw-sandbox/x/pool")),
            Path::new("/var/lib/hsw-sandbox/x/state")
        );
        assert_eq!(default_gpu_state_dir(Path::new("/")), Path::new("/state"));
    }

    #[test]
    fn cni_names_are_the_serde_names() {
        for c in [Cni::Bridge, Cni::Calico, Cni::Flannel, Cni::Cilium] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
