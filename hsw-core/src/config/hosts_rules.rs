//! The rules of the hosts (`host`, or several named in `hosts`) and of where each VM group and GPU sits on them.
//!
//! | rule | what |
//! |---|---|
//! | `host.libvirt-uri`, `hosts.libvirt-uri` | a libvirt URI hsw accepts ([`super::uri`]) |
//! | `hosts.both` | `host` and `hosts` are not both set |
//! | `hosts.name` | a host's name is a DNS label |
//! | `hosts.known-hosts` | with two or more hosts, a `qemu+ssh` URI pins its `known_hosts` file |
//! | `hosts.same-uri` | no two hosts reach the same libvirt |
//! | `placement.no-hosts` | a `host`/`hosts` placement needs `hosts` |
//! | `placement.unknown-host` | a placement names a host of `hosts` |
//! | `placement.duplicate` | a group's `hosts` names each host once |
//! | `placement.missing` | with two or more hosts, every VM group and GPU device says where it is |
//! | `placement.gpu-host` | a VM with GPU units is on the host of the GPUs |
//! | `placement.gpu-hosts` | GPUs on several hosts: not planned yet (the planner gives any unit to any VM) |

use std::collections::{BTreeMap, BTreeSet};

use crate::config::model::{ClusterConfig, DEFAULT_LIBVIRT_URI};
use crate::config::rules::{groups, GroupRef};
use crate::config::uri::check_libvirt_uri;
use crate::config::yaml::escape_token;
use crate::diag::Diagnostic;

/// Runs the rules above.
pub fn check(config: &ClusterConfig, out: &mut Vec<Diagnostic>) {
    if let Some(uri) = config.host.as_ref().and_then(|h| h.libvirt_uri.as_deref()) {
        if let Err(e) = check_libvirt_uri(uri) {
            out.push(
                Diagnostic::error("host.libvirt-uri", "/host/libvirt_uri", e)
                    .with_hint("leave libvirt_uri out for the local system libvirtd"),
            );
        }
    }
    if config.host.is_some() && !config.hosts.is_empty() {
        out.push(
            Diagnostic::error(
                "hosts.both",
                "/hosts",
                "`host` and `hosts` are both set: say the hosts once",
            )
            .with_hint(
                "move the `host` block into `hosts` under a name (`hosts: {ws1: {libvirt_uri: ...}}`) and remove `host`",
            ),
        );
    }
    check_hosts(config, out);
    check_placement(config, out);
}

fn at(name: &str) -> String {
    format!("/hosts/{}", escape_token(name))
}

/// Whether `name` is a DNS label: lowercase letters, digits and inner hyphens, at most 63 characters.
fn dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn check_hosts(config: &ClusterConfig, out: &mut Vec<Diagnostic>) {
    let several = config.hosts.len() >= 2;
    let mut by_uri: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, h) in &config.hosts {
        if !dns_label(name) {
            out.push(
                Diagnostic::error(
                    "hosts.name",
                    at(name),
                    format!("host name `{name}` is not a DNS label"),
                )
                .with_hint("use lowercase letters, digits and inner hyphens, at most 63 characters (e.g. `ws2`)"),
            );
        }
        let uri = h.libvirt_uri.as_deref().unwrap_or(DEFAULT_LIBVIRT_URI);
        if let Err(e) = check_libvirt_uri(uri) {
            out.push(
                Diagnostic::error(
                    "hosts.libvirt-uri",
                    format!("{}/libvirt_uri", at(name)),
                    e,
                )
                .with_hint("qemu:///system for this machine, qemu+ssh://root@HOST/system?known_hosts=/abs/file for another"),
            );
            continue;
        }
        if several && uri.starts_with("qemu+ssh://") && !has_param(uri, "known_hosts") {
            out.push(
                Diagnostic::error(
                    "hosts.known-hosts",
                    format!("{}/libvirt_uri", at(name)),
                    format!(
                        "host `{name}` is reached over SSH without a pinned host key: `{uri}` names no `known_hosts` file"
                    ),
                )
                .with_hint(
                    "put the host's key in a root-owned file (ssh-keyscan HOST, then compare its fingerprint with the host's own \
                     `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and add `?known_hosts=/abs/file` to the URI",
                ),
            );
        }
        if let Some(other) = by_uri.insert(uri, name) {
            out.push(
                Diagnostic::error(
                    "hosts.same-uri",
                    format!("{}/libvirt_uri", at(name)),
                    format!("hosts `{other}` and `{name}` both reach libvirt at `{uri}`: they are one host"),
                )
                .with_hint("give each host its own libvirt URI, or keep one of them"),
            );
        }
    }
}

/// Whether the URI's query has the parameter `key`.
fn has_param(uri: &str, key: &str) -> bool {
    uri.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == key)
    })
}

fn check_placement(config: &ClusterConfig, out: &mut Vec<Diagnostic>) {
    let names: Vec<&str> = config.hosts.keys().map(String::as_str).collect();
    let several = names.len() >= 2;
    let known = names.join(", ");
    let groups = groups(config);
    // (pointer of the placement, the names it gives)
    let mut places: Vec<(String, Vec<&str>)> = groups
        .iter()
        .map(|g| {
            (
                format!("{}/{}", g.pointer, g.placement.1),
                g.placement.0.clone(),
            )
        })
        .collect();
    for (i, d) in config.gpu_devices().iter().enumerate() {
        places.push((
            format!("/global/gpu_allocation/devices/{i}/host"),
            d.host.as_deref().into_iter().collect(),
        ));
    }
    for (pointer, given) in &places {
        if given.is_empty() {
            if several {
                out.push(
                    Diagnostic::error(
                        "placement.missing",
                        pointer.clone(),
                        format!(
                            "with {} hosts ({known}), this does not say which it is on",
                            names.len()
                        ),
                    )
                    .with_hint(format!(
                        "add `{}: ...` naming one of {known}",
                        key_of(pointer)
                    )),
                );
            }
            continue;
        }
        if names.is_empty() {
            out.push(
                Diagnostic::error(
                    "placement.no-hosts",
                    pointer.clone(),
                    format!("`{}` names a host, but cluster.yaml has no `hosts`", key_of(pointer)),
                )
                .with_hint("define the hosts in `hosts` (a name each), or leave the placement out for one host"),
            );
            continue;
        }
        let mut seen = BTreeSet::new();
        for name in given {
            if !config.hosts.contains_key(*name) {
                out.push(
                    Diagnostic::error(
                        "placement.unknown-host",
                        pointer.clone(),
                        format!("host `{name}` is not in `hosts`"),
                    )
                    .with_hint(format!("name one of {known}")),
                );
            } else if !seen.insert(*name) {
                out.push(
                    Diagnostic::error(
                        "placement.duplicate",
                        pointer.clone(),
                        format!("host `{name}` is named twice"),
                    )
                    .with_hint("name each host once: VMs go on the listed hosts in turn"),
                );
            }
        }
    }
    if several {
        check_gpu_hosts(config, &groups, out);
    }
}

/// The last token of a pointer (`host` or `hosts`).
fn key_of(pointer: &str) -> &str {
    pointer.rsplit('/').next().unwrap_or(pointer)
}

/// With several hosts: the GPUs are on one host, and every VM with GPU units on that host.
fn check_gpu_hosts(config: &ClusterConfig, groups: &[GroupRef<'_>], out: &mut Vec<Diagnostic>) {
    let Some(alloc) = config.global.gpu_allocation.as_ref() else {
        return;
    };
    let gpu_hosts: BTreeSet<&str> = alloc
        .devices
        .iter()
        .filter_map(|d| d.host.as_deref())
        .collect();
    if gpu_hosts.len() >= 2 {
        out.push(
            Diagnostic::error(
                "placement.gpu-hosts",
                "/global/gpu_allocation/devices",
                format!(
                    "the GPUs sit in {} hosts ({}): hsw plans GPU units for the GPUs of one host only so far",
                    gpu_hosts.len(),
                    gpu_hosts.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            )
            .with_hint("list only the GPUs of one host in gpu_allocation.devices, and place the GPU-enabled groups there"),
        );
        return;
    }
    let Some(gpu_host) = gpu_hosts.first() else {
        return;
    };
    for g in groups.iter().filter(|g| g.gpu_units > 0) {
        let elsewhere: BTreeSet<&str> = (0..g.count)
            .filter_map(|i| g.host_of(i))
            .filter(|h| h != gpu_host)
            .collect();
        if let Some(h) = elsewhere.first() {
            out.push(
                Diagnostic::error(
                    "placement.gpu-host",
                    format!("{}/{}", g.pointer, g.placement.1),
                    format!(
                        "VMs of this group get GPU units but go on host `{h}`, and every GPU is in `{gpu_host}`: a GPU unit \
                         reaches only a VM of its own host"
                    ),
                )
                .with_hint(format!("place the group on `{gpu_host}` (`hosts: [{gpu_host}]`)")),
            );
        }
    }
}
