//! Semantic rules over a schema-valid [`ClusterConfig`]: what JSON Schema cannot say.
//!
//! Each rule has a stable id (the `rule` of its diagnostics) and at least one test in
//! `tests/validate_rules.rs`. Rules never stop at the first finding.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::config::attach_rules;
use crate::config::model::{
    kubernetes_bundle_minor, ClusterConfig, Cni, GpuAllocation, KubernetesSource, NodeGroup,
    Strategy, CLUSTER_KEYS,
};
use crate::config::schema::suggest;
use crate::config::yaml::escape_token;
use crate::diag::Diagnostic;
use crate::gpu::catalog;

/// An IPv4 network with the host's (gateway) address on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedNetwork {
    /// The subnet.
    pub net: Ipv4Net,
    /// The host/bridge address: `gateway`, or the first usable address.
    pub gateway: Ipv4Addr,
}

/// Parses `a.b.c.d/len` as a network address (host bits must be zero).
pub fn parse_subnet(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| format!("`{text}` is not an IPv4 network in CIDR form"))?;
    if net.network() != net.addr() {
        return Err(format!(
            "`{text}` is not a network address: its host bits are set (did you mean {}/{}?)",
            net.network(),
            net.prefix_len()
        ));
    }
    if net.prefix_len() > 30 {
        return Err(format!(
            "`{text}` is too small: a /{} has no room for a host and VMs",
            net.prefix_len()
        ));
    }
    Ok(net)
}

/// The first usable address of a subnet (the default gateway).
pub fn first_usable(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
}

/// Parses a node address list: `a.b.c.d`, `a.b.c.d-N` (last-octet range) or `a.b.c.d-e.f.g.h`.
/// Returns the first and last address, inclusive.
pub fn parse_ip_range(text: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let bad = || format!("`{text}` is not an address or an address range");
    let (first, last) = match text.split_once('-') {
        None => {
            let a: Ipv4Addr = text.parse().map_err(|_| bad())?;
            (a, a)
        }
        Some((a, b)) => {
            let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
            let b: Ipv4Addr = if b.contains('.') {
                b.parse().map_err(|_| bad())?
            } else {
                let octet: u8 = b
                    .parse()
                    .map_err(|_| format!("`{text}`: `{b}` is not a last octet (0-255)"))?;
                let [x, y, z, _] = a.octets();
                Ipv4Addr::new(x, y, z, octet)
            };
            (a, b)
        }
    };
    if u32::from(last) < u32::from(first) {
        return Err(format!(
            "`{text}` is descending: write the lower address first"
        ));
    }
    Ok((first, last))
}

/// Slurm's time formats: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`, `UNLIMITED`/`INFINITE`.
pub fn is_slurm_time(text: &str) -> bool {
    if matches!(text, "UNLIMITED" | "INFINITE" | "unlimited" | "infinite") {
        return true;
    }
    let num = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    let lt60 = |s: &str| num(s) && s.len() <= 2 && s.parse::<u32>().is_ok_and(|v| v < 60);
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, text),
    };
    if let Some(d) = days {
        if !num(d) {
            return false;
        }
        let parts: Vec<&str> = rest.split(':').collect();
        return match parts.as_slice() {
            [h] => num(h) && h.len() <= 2 && h.parse::<u32>().is_ok_and(|v| v < 24),
            [h, m] => num(h) && h.len() <= 2 && h.parse::<u32>().is_ok_and(|v| v < 24) && lt60(m),
            [h, m, s] => {
                num(h)
                    && h.len() <= 2
                    && h.parse::<u32>().is_ok_and(|v| v < 24)
                    && lt60(m)
                    && lt60(s)
            }
            _ => false,
        };
    }
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [m] => num(m) && m != &"0" && m.bytes().any(|b| b != b'0'),
        [m, s] => num(m) && lt60(s),
        [h, m, s] => num(h) && lt60(m) && lt60(s),
        _ => false,
    }
}

/// A node group (or single node) of a cluster, for rules and planning.
#[derive(Debug, Clone)]
pub struct GroupRef<'a> {
    /// `hpc` or `cloud`.
    pub cluster: &'static str,
    /// Role name (`controller`, `compute`, `control_plane`, `cpu_worker`, `gpu_worker`).
    pub role: &'static str,
    /// JSON pointer of the group.
    pub pointer: String,
    /// VM count.
    pub count: u32,
    /// vCPUs per VM.
    pub cpu_cores: u32,
    /// GiB per VM.
    pub memory_gb: u32,
    /// GiB disk per VM.
    pub disk_gb: u32,
    /// GPU units per VM.
    pub gpu_units: u32,
    /// The address text (`ip_address` or `ip_range`) and its key.
    pub addresses: (&'a str, &'static str),
    /// The hosts its VMs go on, in turn (empty: not placed), and the key that says so (`host` or `hosts`).
    pub placement: (Vec<&'a str>, &'static str),
}

impl GroupRef<'_> {
    /// The host of its `index`-th VM (from 0): the placement's names in turn; `None` when it is not placed.
    pub fn host_of(&self, index: u32) -> Option<&str> {
        let (names, _) = &self.placement;
        (!names.is_empty()).then(|| names[index as usize % names.len()])
    }
}

/// Every VM group of the config, in a fixed order.
pub fn groups(config: &ClusterConfig) -> Vec<GroupRef<'_>> {
    let mut out = Vec::new();
    if let Some(hpc) = &config.clusters.hpc {
        let c = &hpc.controller;
        out.push(GroupRef {
            cluster: "hpc",
            role: "controller",
            pointer: "/clusters/hpc/controller".into(),
            count: 1,
            cpu_cores: c.cpu_cores,
            memory_gb: c.memory_gb,
            disk_gb: c.disk_gb,
            gpu_units: 0,
            addresses: (&c.ip_address, "ip_address"),
            placement: (c.host.as_deref().into_iter().collect(), "host"),
        });
        out.push(group(
            "hpc",
            "compute",
            "/clusters/hpc/compute_nodes",
            &hpc.compute_nodes,
        ));
    }
    if let Some(cloud) = &config.clusters.cloud {
        let c = &cloud.control_plane;
        out.push(GroupRef {
            cluster: "cloud",
            role: "control_plane",
            pointer: "/clusters/cloud/control_plane".into(),
            count: 1,
            cpu_cores: c.cpu_cores,
            memory_gb: c.memory_gb,
            disk_gb: c.disk_gb,
            gpu_units: 0,
            addresses: (&c.ip_address, "ip_address"),
            placement: (c.host.as_deref().into_iter().collect(), "host"),
        });
        if let Some(g) = &cloud.worker_nodes.cpu_workers {
            out.push(group(
                "cloud",
                "cpu_worker",
                "/clusters/cloud/worker_nodes/cpu_workers",
                g,
            ));
        }
        if let Some(g) = &cloud.worker_nodes.gpu_workers {
            out.push(group(
                "cloud",
                "gpu_worker",
                "/clusters/cloud/worker_nodes/gpu_workers",
                g,
            ));
        }
    }
    out
}

fn group<'a>(
    cluster: &'static str,
    role: &'static str,
    pointer: &str,
    g: &'a NodeGroup,
) -> GroupRef<'a> {
    GroupRef {
        cluster,
        role,
        pointer: pointer.into(),
        count: g.count,
        cpu_cores: g.cpu_cores,
        memory_gb: g.memory_gb,
        disk_gb: g.disk_gb,
        gpu_units: g.gpu_units_per_node(),
        addresses: (&g.ip_range, "ip_range"),
        placement: (g.hosts.iter().map(String::as_str).collect(), "hosts"),
    }
}

/// The network a cluster uses, by cluster key.
pub fn cluster_network<'a>(config: &'a ClusterConfig, cluster: &str) -> Option<&'a str> {
    match cluster {
        "hpc" => config.clusters.hpc.as_ref().map(|c| c.network_name()),
        "cloud" => config.clusters.cloud.as_ref().map(|c| c.network_name()),
        _ => None,
    }
}

/// Runs every semantic rule.
pub fn check(config: &ClusterConfig) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let networks = check_networks(config, &mut out);
    check_addresses(config, &networks, &mut out);
    crate::config::hpc_rules::check(config, &mut out);
    check_kubernetes(config, &networks, &mut out);
    check_gpus(config, &mut out);
    crate::config::hosts_rules::check(config, &mut out);
    out
}

fn check_networks(
    config: &ClusterConfig,
    out: &mut Vec<Diagnostic>,
) -> BTreeMap<String, ResolvedNetwork> {
    let mut resolved = BTreeMap::new();
    let mut bridges: HashMap<&str, &str> = HashMap::new();
    for (name, net) in &config.global.networks {
        let at = format!("/global/networks/{}", escape_token(name));
        if let Some(other) = bridges.insert(net.bridge.as_str(), name.as_str()) {
            out.push(
                Diagnostic::error(
                    "network.bridge-duplicate",
                    format!("{at}/bridge"),
                    format!(
                        "bridge `{}` is used by networks `{other}` and `{name}`",
                        net.bridge
                    ),
                )
                .with_hint("give each network its own bridge name"),
            );
        }
        let subnet = match parse_subnet(&net.subnet) {
            Ok(s) => s,
            Err(e) => {
                out.push(Diagnostic::error(
                    "network.subnet-invalid",
                    format!("{at}/subnet"),
                    e,
                ));
                continue;
            }
        };
        let gateway = match &net.gateway {
            None => first_usable(&subnet),
            Some(g) => match g.parse::<Ipv4Addr>() {
                Ok(g) if usable(&subnet, g) => g,
                Ok(g) => {
                    out.push(
                        Diagnostic::error(
                            "network.gateway",
                            format!("{at}/gateway"),
                            format!("gateway {g} is not a usable address of {subnet}"),
                        )
                        .with_hint(format!("omit `gateway` to use {}", first_usable(&subnet))),
                    );
                    continue;
                }
                Err(_) => {
                    out.push(Diagnostic::error(
                        "network.gateway",
                        format!("{at}/gateway"),
                        format!("gateway `{g}` is not an IPv4 address"),
                    ));
                    continue;
                }
            },
        };
        for (other_name, other) in &resolved {
            let other: &ResolvedNetwork = other;
            if subnet.contains(&other.net) || other.net.contains(&subnet) {
                out.push(
                    Diagnostic::error(
                        "network.subnet-overlap",
                        format!("{at}/subnet"),
                        format!(
                            "subnet {subnet} of `{name}` overlaps {} of `{other_name}`",
                            other.net
                        ),
                    )
                    .with_hint("networks must not share addresses: pick disjoint subnets"),
                );
            }
        }
        resolved.insert(
            name.clone(),
            ResolvedNetwork {
                net: subnet,
                gateway,
            },
        );
    }
    for cluster in CLUSTER_KEYS {
        let Some(net_name) = cluster_network(config, cluster) else {
            continue;
        };
        if !config.global.networks.contains_key(net_name) {
            let names: Vec<String> = config.global.networks.keys().cloned().collect();
            let explicit = match cluster {
                "hpc" => config
                    .clusters
                    .hpc
                    .as_ref()
                    .is_some_and(|c| c.network.is_some()),
                _ => config
                    .clusters
                    .cloud
                    .as_ref()
                    .is_some_and(|c| c.network.is_some()),
            };
            let path = if explicit {
                format!("/clusters/{cluster}/network")
            } else {
                format!("/clusters/{cluster}")
            };
            let mut d = Diagnostic::error(
                "network.unknown",
                path,
                format!("cluster `{cluster}` uses network `{net_name}`, which `global.networks` does not define"),
            );
            d = match suggest(net_name, &names) {
                Some(s) => d.with_hint(format!("did you mean `{s}`? (set `clusters.{cluster}.network`)")),
                None => d.with_hint(format!(
                    "define `global.networks.{net_name}` or set `clusters.{cluster}.network` to one of: {}",
                    names.join(", ")
                )),
            };
            out.push(d);
        }
    }
    if let (Some(h), Some(c)) = (
        cluster_network(config, "hpc"),
        cluster_network(config, "cloud"),
    ) {
        if h == c {
            out.push(
                Diagnostic::warning(
                    "network.shared",
                    "/clusters/cloud",
                    format!(
                        "both clusters use network `{h}`: they cannot be segmented from each other"
                    ),
                )
                .with_hint("give each cluster its own network"),
            );
        }
    }
    resolved
}

fn usable(net: &Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip) && ip != net.network() && ip != net.broadcast()
}

fn check_addresses(
    config: &ClusterConfig,
    networks: &BTreeMap<String, ResolvedNetwork>,
    out: &mut Vec<Diagnostic>,
) {
    // Every address in use, with who uses it: node addresses must be unique across clusters.
    let mut seen: HashMap<u32, String> = HashMap::new();
    for (name, net) in networks {
        seen.insert(
            u32::from(net.gateway),
            format!("the host (gateway of `{name}`)"),
        );
    }
    for g in groups(config) {
        let (text, key) = g.addresses;
        let at = format!("{}/{key}", g.pointer);
        let (first, last) = match parse_ip_range(text) {
            Ok(r) => r,
            Err(e) => {
                out.push(Diagnostic::error("ip.range-invalid", at, e));
                continue;
            }
        };
        let size = u64::from(u32::from(last)) - u64::from(u32::from(first)) + 1;
        if size < u64::from(g.count) {
            out.push(
                Diagnostic::error(
                    "ip.range-size",
                    at.clone(),
                    format!(
                        "`{text}` holds {size} address{} but `count` is {}",
                        if size == 1 { "" } else { "es" },
                        g.count
                    ),
                )
                .with_hint(format!(
                    "widen the range to {} addresses or lower `count`",
                    g.count
                )),
            );
        }
        let Some(net_name) = cluster_network(config, g.cluster) else {
            continue;
        };
        let Some(net) = networks.get(net_name) else {
            continue;
        };
        let used = size.min(u64::from(g.count)) as u32;
        let mut reported_outside = false;
        for i in 0..used {
            let ip = Ipv4Addr::from(u32::from(first).wrapping_add(i));
            if !net.net.contains(&ip) {
                if !reported_outside {
                    out.push(
                        Diagnostic::error(
                            "ip.outside-subnet",
                            at.clone(),
                            format!("{ip} is outside subnet {} of network `{net_name}`", net.net),
                        )
                        .with_hint(format!(
                            "use addresses between {} and {}",
                            first_usable(&net.net),
                            last_usable(&net.net)
                        )),
                    );
                    reported_outside = true;
                }
                continue;
            }
            if ip == net.net.network() || ip == net.net.broadcast() {
                out.push(Diagnostic::error(
                    "ip.reserved",
                    at.clone(),
                    format!(
                        "{ip} is the {} address of {}",
                        if ip == net.net.network() {
                            "network"
                        } else {
                            "broadcast"
                        },
                        net.net
                    ),
                ));
                continue;
            }
            if ip == net.gateway {
                out.push(
                    Diagnostic::error(
                        "ip.gateway",
                        at.clone(),
                        format!("{ip} is the host's address on `{net_name}` (its gateway)"),
                    )
                    .with_hint("the host takes the first usable address unless `gateway` says otherwise; start VMs after it"),
                );
                continue;
            }
            let owner = format!(
                "`{}`",
                crate::config::schema::describe(&g.pointer).trim_matches('`')
            );
            if let Some(prev) = seen.insert(u32::from(ip), owner.clone()) {
                if prev != owner {
                    out.push(Diagnostic::error(
                        "ip.duplicate",
                        at.clone(),
                        format!("{ip} is used by both {prev} and {owner}"),
                    ));
                }
            }
        }
    }
}

fn last_usable(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.broadcast()).saturating_sub(1))
}

fn check_kubernetes(
    config: &ClusterConfig,
    networks: &BTreeMap<String, ResolvedNetwork>,
    out: &mut Vec<Diagnostic>,
) {
    let Some(cloud) = &config.clusters.cloud else {
        return;
    };
    let k = &cloud.kubernetes_config;
    let at = |key: &str| format!("/clusters/cloud/kubernetes_config/{key}");
    let source = k.source.unwrap_or_default();
    if source == KubernetesSource::Packages && k.cni == Cni::Bridge {
        out.push(Diagnostic::error(
            "kubernetes.bridge-needs-bundle",
            at("cni"),
            "cni: bridge runs kube-proxy from hsw's bundle, and pkgs.k8s.io has no kube-proxy binary: set \
             source: bundle, or choose calico, flannel or cilium"
                .to_owned(),
        ));
    }
    if let (KubernetesSource::Bundle, Some(v)) = (source, k.version.as_deref()) {
        let minor = kubernetes_bundle_minor();
        if v != minor {
            out.push(Diagnostic::error(
                "kubernetes.version-not-in-bundle",
                at("version"),
                format!(
                    "version {v} is not the bundle's Kubernetes ({minor}): remove version, set it to {minor}, \
                     or set source: packages (pkgs.k8s.io, needs the internet)"
                ),
            ));
        }
    }
    let mut cidrs: Vec<(&str, Ipv4Net)> = Vec::new();
    for (key, text, default) in [
        ("pod_subnet", k.pod_subnet.as_deref(), "10.244.0.0/16"),
        (
            "service_subnet",
            k.service_subnet.as_deref(),
            "10.96.0.0/12",
        ),
    ] {
        let at = format!("/clusters/cloud/kubernetes_config/{key}");
        match parse_subnet(text.unwrap_or(default)) {
            Ok(net) => {
                for (name, n) in networks {
                    if net.contains(&n.net) || n.net.contains(&net) {
                        out.push(Diagnostic::error(
                            "kubernetes.cidr-overlap",
                            if text.is_some() {
                                at.clone()
                            } else {
                                "/clusters/cloud/kubernetes_config".into()
                            },
                            format!(
                                "Kubernetes {key} {net} overlaps network `{name}` ({})",
                                n.net
                            ),
                        ));
                    }
                }
                cidrs.push((key, net));
            }
            Err(e) => out.push(Diagnostic::error("kubernetes.cidr-invalid", at, e)),
        }
    }
    if let [(a, x), (b, y)] = cidrs.as_slice() {
        if x.contains(y) || y.contains(x) {
            out.push(Diagnostic::error(
                "kubernetes.cidr-overlap",
                "/clusters/cloud/kubernetes_config",
                format!("Kubernetes {a} {x} overlaps {b} {y}"),
            ));
        }
    }
}

/// GPU units each cluster's GPU-enabled nodes need, with the groups that need them.
fn gpu_demand(config: &ClusterConfig) -> BTreeMap<&'static str, (u32, Vec<String>)> {
    let mut demand: BTreeMap<&'static str, (u32, Vec<String>)> = BTreeMap::new();
    for g in groups(config) {
        if g.gpu_units > 0 {
            let e = demand.entry(g.cluster).or_default();
            e.0 = e.0.saturating_add(g.count.saturating_mul(g.gpu_units));
            e.1.push(g.pointer.clone());
        }
    }
    demand
}

fn check_gpus(config: &ClusterConfig, out: &mut Vec<Diagnostic>) {
    let demand = gpu_demand(config);
    let Some(alloc) = &config.global.gpu_allocation else {
        for (cluster, (_, pointers)) in &demand {
            for p in pointers {
                out.push(
                    Diagnostic::error(
                        "gpu.missing-allocation",
                        format!("{p}/gpu_enabled"),
                        format!("this `{cluster}` node group is GPU-enabled but `global.gpu_allocation` is missing"),
                    )
                    .with_hint("describe the GPUs under `global.gpu_allocation`, or set `gpu_enabled: false`"),
                );
            }
        }
        return;
    };
    check_gpu_devices(alloc, out);
    check_gpu_strategy(alloc, out);
    attach_rules::check_named_types(config, out);
    // Units per cluster against what GPU-enabled nodes need.
    for cluster in CLUSTER_KEYS {
        let mig = alloc
            .mig_slices
            .as_ref()
            .and_then(|m| m.get(cluster))
            .copied()
            .unwrap_or(0);
        let whole = alloc
            .whole_gpus
            .as_ref()
            .and_then(|m| m.get(cluster))
            .copied()
            .unwrap_or(0);
        let units = mig.saturating_add(whole);
        if units > 0 && !config.has_cluster(cluster) {
            out.push(Diagnostic::error(
                "gpu.unknown-cluster",
                "/global/gpu_allocation",
                format!("GPU units are allocated to cluster `{cluster}`, which `clusters` does not define"),
            ));
            continue;
        }
        let (needed, pointers) = demand.get(cluster).cloned().unwrap_or_default();
        if needed > units {
            for p in &pointers {
                out.push(
                    Diagnostic::error(
                        "gpu.units",
                        format!("{p}/gpu_enabled"),
                        format!(
                            "cluster `{cluster}` has GPU-enabled nodes needing {needed} GPU unit{} but is allocated {units} ({mig} MIG slice{}, {whole} whole GPU{})",
                            if needed == 1 { "" } else { "s" },
                            if mig == 1 { "" } else { "s" },
                            if whole == 1 { "" } else { "s" },
                        ),
                    )
                    .with_hint(format!(
                        "raise `global.gpu_allocation.mig_slices.{cluster}` or `whole_gpus.{cluster}`, or lower the node count"
                    )),
                );
            }
        } else if units > needed {
            out.push(
                Diagnostic::error(
                    "gpu.units-unused",
                    "/global/gpu_allocation",
                    format!(
                        "cluster `{cluster}` is allocated {units} GPU unit{} but its GPU-enabled nodes take {needed}; {} would reach no VM",
                        if units == 1 { "" } else { "s" },
                        units - needed
                    ),
                )
                .with_hint(format!(
                    "lower `global.gpu_allocation.mig_slices.{cluster}` / `whole_gpus.{cluster}` to {needed} in all, or add GPU-enabled nodes"
                )),
            );
        }
    }
    // A unit no VM takes does not stop the planner: whether the request fits is a finding of its own.
    if !out.iter().any(|d| {
        d.rule.starts_with("gpu.")
            && d.rule != "gpu.units-unused"
            && d.severity == crate::diag::Severity::Error
    }) {
        match crate::config::gpu::plan(config) {
            Ok(plan) => attach_rules::check_layout(config, &plan, out),
            Err(e) => out.push(
                Diagnostic::error("gpu.infeasible", "/global/gpu_allocation", format!("the GPU request cannot be placed: {e}"))
                    .with_hint("run `hsw-cli gpu plan` to see what fits; lower the counts or allow more profiles"),
            ),
        }
    }
}

fn check_gpu_devices(alloc: &GpuAllocation, out: &mut Vec<Diagnostic>) {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut pcis: HashMap<String, usize> = HashMap::new();
    for (i, dev) in alloc.devices.iter().enumerate() {
        let at = format!("/global/gpu_allocation/devices/{i}");
        if let Some(first) = ids.insert(dev.id.as_str(), i) {
            out.push(Diagnostic::error(
                "gpu.id-duplicate",
                format!("{at}/id"),
                format!("GPU id `{}` is used by devices {first} and {i}", dev.id),
            ));
        }
        if let Some(first) = pcis.insert(dev.pci_address.to_ascii_lowercase(), i) {
            out.push(Diagnostic::error(
                "gpu.pci-duplicate",
                format!("{at}/pci_address"),
                format!(
                    "PCI address {} is used by devices {first} and {i}",
                    dev.pci_address
                ),
            ));
        }
        let model = catalog::lookup_model(&dev.model);
        if let Some(profiles) = &dev.allowed_mig_profiles {
            if !dev.mig_capable {
                out.push(
                    Diagnostic::error(
                        "gpu.not-mig-capable",
                        format!("{at}/allowed_mig_profiles"),
                        format!("GPU `{}` lists MIG profiles but `mig_capable` is false", dev.id),
                    )
                    .with_hint("set `mig_capable: true` if the GPU supports MIG, or remove `allowed_mig_profiles`"),
                );
            } else if let Some(model) = model {
                for (j, name) in profiles.iter().enumerate() {
                    if model.profile(name).is_none() {
                        let named = if model.display_name == dev.model {
                            String::new()
                        } else {
                            format!(" (`{}`)", dev.model)
                        };
                        let mut d = Diagnostic::error(
                            "gpu.unknown-profile",
                            format!("{at}/allowed_mig_profiles/{j}"),
                            format!(
                                "MIG profile `{name}` does not exist on {}{named}",
                                model.display_name
                            ),
                        )
                        .with_label("not a profile of this model");
                        d = match catalog::suggest_profile(model, name) {
                            Some(p) => d.with_hint(format!(
                                "did you mean `{}`? {} profiles: {}",
                                p.name,
                                model.display_name,
                                profile_names(model)
                            )),
                            None => d.with_hint(format!(
                                "{} profiles: {}",
                                model.display_name,
                                profile_names(model)
                            )),
                        };
                        out.push(d);
                    }
                }
            }
        }
        if dev.mig_capable && model.is_none() {
            out.push(
                Diagnostic::warning(
                    "gpu.unknown-model",
                    format!("{at}/model"),
                    format!("model `{}` is not in hsw's MIG catalog: its profiles and placements cannot be checked", dev.model),
                )
                .with_hint(format!("known models: {}", catalog::models().iter().map(|m| m.display_name).collect::<Vec<_>>().join(", "))),
            );
        }
    }
}

fn profile_names(model: &catalog::GpuModel) -> String {
    model
        .profiles
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_gpu_strategy(alloc: &GpuAllocation, out: &mut Vec<Diagnostic>) {
    let mig_total: u32 = alloc.mig_slices.as_ref().map_or(0, |m| {
        m.hpc.unwrap_or(0).saturating_add(m.cloud.unwrap_or(0))
    });
    let whole_total: u32 = alloc.whole_gpus.as_ref().map_or(0, |m| {
        m.hpc.unwrap_or(0).saturating_add(m.cloud.unwrap_or(0))
    });
    match alloc.strategy {
        Strategy::Mig if whole_total > 0 => out.push(
            Diagnostic::error(
                "gpu.strategy",
                "/global/gpu_allocation/whole_gpus",
                format!(
                    "strategy `mig` allows no whole GPUs, but `whole_gpus` asks for {whole_total}"
                ),
            )
            .with_hint("use strategy `hybrid` to mix MIG slices and whole GPUs"),
        ),
        Strategy::Whole if mig_total > 0 => out.push(
            Diagnostic::error(
                "gpu.strategy",
                "/global/gpu_allocation/mig_slices",
                format!(
                    "strategy `whole` allows no MIG slices, but `mig_slices` asks for {mig_total}"
                ),
            )
            .with_hint("use strategy `hybrid` to mix MIG slices and whole GPUs"),
        ),
        _ => {}
    }
    if mig_total > 0 && !alloc.devices.iter().any(|d| d.mig_capable) {
        out.push(
            Diagnostic::error(
                "gpu.no-mig-device",
                "/global/gpu_allocation/mig_slices",
                format!("{mig_total} MIG slices are requested but no device is `mig_capable`"),
            )
            .with_hint(
                "mark a MIG-capable GPU with `mig_capable: true`, or request whole GPUs instead",
            ),
        );
    }
    if let Some(per) = &alloc.mig_profiles {
        for cluster in CLUSTER_KEYS {
            let Some(list) = per.get(cluster) else {
                continue;
            };
            for (j, name) in list.iter().enumerate() {
                let known = alloc.devices.iter().filter(|d| d.mig_capable).any(|d| {
                    catalog::lookup_model(&d.model).is_none_or(|m| m.profile(name).is_some())
                });
                if !known {
                    out.push(Diagnostic::error(
                        "gpu.unknown-profile",
                        format!("/global/gpu_allocation/mig_profiles/{cluster}/{j}"),
                        format!("MIG profile `{name}` exists on none of the MIG-capable devices"),
                    ));
                }
            }
        }
    }
}
