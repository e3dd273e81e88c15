//! The `conflicts` check: the config's bridges and subnets against the interfaces and routes the host has.
//!
//! A bridge that this deployment's own libvirt network made is no conflict (a second `terraform apply`, or
//! `up` after a scale-out, runs the check again with the network active): libvirt records each active
//! network's status, with the bridge it made, in `/run/libvirt/network/<network>.xml`. Such a bridge, and the
//! route for its subnet through it, are reported as this deployment's.

use std::fs;

use super::{capitalize, shown, Check, Status};
use crate::config::model::ClusterConfig;
use crate::config::rules;
use crate::host::env::{read_optional, Host};
use crate::host::parse;
use crate::render::terraform::network_name;

/// At most this much of a libvirt network status file is read (they are a few KiB).
const STATUS_MAX: u64 = 1 << 20;

/// Whether libvirt's status file for the network `net` (as hsw names it) says it made `bridge`.
fn made_by_our_network(host: &dyn Host, net: &str, bridge: &str) -> bool {
    let path = host.path(&format!("/run/libvirt/network/{net}.xml"));
    let Ok(f) = fs::File::open(&path) else {
        return false;
    };
    let mut text = String::new();
    if std::io::Read::read_to_string(&mut std::io::Read::take(f, STATUS_MAX), &mut text).is_err() {
        return false;
    }
    let Ok(doc) = roxmltree::Document::parse(&text) else {
        return false;
    };
    let mut networks = doc.descendants().filter(|n| n.has_tag_name("network"));
    networks.any(|n| {
        let child = |tag: &str| n.children().find(|c| c.has_tag_name(tag));
        child("name").and_then(|c| c.text()) == Some(net)
            && child("bridge").and_then(|c| c.attribute("name")) == Some(bridge)
    })
}

pub(super) fn check_conflicts(host: &dyn Host, config: &ClusterConfig) -> Check {
    const ID: &str = "conflicts";
    let mut problems = Vec::new();
    let mut fine = Vec::new();
    let route_path = host.proc_net_route();
    let (routes, route_note) = match read_optional(&route_path) {
        Ok(Some(t)) => (parse::routes(&t), None),
        Ok(None) => (
            Vec::new(),
            Some(format!(
                "{} does not exist, so routes were not compared",
                shown(host, &route_path)
            )),
        ),
        Err(e) => (
            Vec::new(),
            Some(format!("cannot read {}: {e}", shown(host, &route_path))),
        ),
    };
    for (name, net) in &config.global.networks {
        let bridge = net.bridge.as_str();
        let bridge_path = host.sys_class_net().join(bridge);
        let exists = !matches!(bridge, "." | "..") && fs::symlink_metadata(&bridge_path).is_ok();
        let libvirt_net = network_name(config, name);
        let ours = exists && made_by_our_network(host, &libvirt_net, bridge);
        if exists && !ours {
            problems.push(format!(
                "network {name}: interface {bridge} already exists (/sys/class/net/{bridge})"
            ));
        }
        if let Ok(subnet) = rules::parse_subnet(&net.subnet) {
            let hits: Vec<String> = routes
                .iter()
                .filter(|r| {
                    r.net.prefix_len() > 0
                        && !(ours && r.iface == bridge)
                        && (r.net.contains(&subnet.network()) || subnet.contains(&r.net.network()))
                })
                .map(|r| format!("{} via {}", r.net, r.iface))
                .collect();
            if hits.is_empty() && ours {
                fine.push(format!(
                    "{bridge} / {subnet} made by this deployment's libvirt network {libvirt_net}"
                ));
            } else if hits.is_empty() {
                fine.push(format!("{bridge} / {subnet}"));
            } else {
                problems.push(format!(
                    "network {name}: {subnet} overlaps routes already on this host ({})",
                    hits.join(", ")
                ));
            }
        }
    }
    let mut msg = if problems.is_empty() {
        let what = if fine.iter().any(|f| f.contains(" made by ")) {
            "No bridge of the config is taken by anything but this deployment, and no subnet is routed by anything else"
        } else {
            "No bridge of the config exists yet and no subnet is routed already"
        };
        format!("{what} ({}).", fine.join(", "))
    } else {
        format!("{}.", capitalize(&problems.join("; ")))
    };
    if let Some(n) = &route_note {
        msg.push_str(&format!(" Note: {n}."));
    }
    if problems.is_empty() {
        let status = if route_note.is_some() {
            Status::Warn
        } else {
            Status::Pass
        };
        return Check::new(ID, status, msg, "Check the routes by hand with `ip route`.");
    }
    Check::new(
        ID,
        Status::Fail,
        msg,
        "If they are left from an earlier deployment of this config, destroy it first (`terraform destroy`); otherwise \
         choose another `bridge` or `subnet` under global.networks in cluster.yaml (`ip -br link` and `ip route` show what is taken).",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::host::env::FixtureHost;

    fn status_file(root: &std::path::Path, file: &str, net: &str, bridge: &str) {
        let d = root.join("run/libvirt/network");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join(format!("{file}.xml")),
            format!("<networkstatus><network><name>{net}</name><bridge name='{bridge}'/></network></networkstatus>"),
        )
        .unwrap();
    }

    #[test]
    fn only_our_own_networks_status_makes_a_bridge_ours() {
        let d = tempfile::tempdir().unwrap();
        let host = FixtureHost::new(d.path(), "root", 1);
        let ours = || made_by_our_network(&host, "hsw-dev-hpc-network", "hswbr-hpc");
        // Nothing recorded, or a stranger's network, or ours naming another bridge, or unreadable XML: not ours.
        assert!(!ours());
        status_file(d.path(), "other", "other", "hswbr-hpc");
        assert!(!ours());
        status_file(
            d.path(),
            "hsw-dev-hpc-network",
            "hsw-dev-hpc-network",
            "virbr0",
        );
        assert!(!ours());
        // A file named for our network that names another network inside does not count either.
        status_file(d.path(), "hsw-dev-hpc-network", "other", "hswbr-hpc");
        assert!(!ours());
        fs::write(
            d.path().join("run/libvirt/network/hsw-dev-hpc-network.xml"),
            "<networkstatus><netw",
        )
        .unwrap();
        assert!(!ours());
        status_file(
            d.path(),
            "hsw-dev-hpc-network",
            "hsw-dev-hpc-network",
            "hswbr-hpc",
        );
        assert!(ours());
    }
}
