//! The `conflicts` check: the config's bridges and subnets against the interfaces and routes the host has.

use std::fs;

use super::{capitalize, shown, Check, Status};
use crate::config::model::ClusterConfig;
use crate::config::rules;
use crate::host::env::{read_optional, Host};
use crate::host::parse;

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
        if exists {
            problems.push(format!(
                "network {name}: interface {bridge} already exists (/sys/class/net/{bridge})"
            ));
        }
        if let Ok(subnet) = rules::parse_subnet(&net.subnet) {
            let hits: Vec<String> = routes
                .iter()
                .filter(|r| {
                    r.net.prefix_len() > 0
                        && (r.net.contains(&subnet.network()) || subnet.contains(&r.net.network()))
                })
                .map(|r| format!("{} via {}", r.net, r.iface))
                .collect();
            if hits.is_empty() {
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
        format!(
            "No bridge of the config exists yet and no subnet is routed already ({}).",
            fine.join(", ")
        )
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
