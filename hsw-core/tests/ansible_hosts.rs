//! The Terraform output contract (`hsw_inventory`): parsing its three accepted forms, the shape errors, the
//! checks against cluster.yaml, the planned hosts; and the inventory built from them (groups, host variables).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use hsw_core::ansible::hosts::{self, HostsError, Role, UnitKind};
use hsw_core::ansible::{Inventory, StateLayout};
use hsw_core::config::{self, ClusterConfig};
use hsw_core::gpu::plan::GpuPlan;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example(name: &str) -> (ClusterConfig, GpuPlan) {
    let source = std::fs::read_to_string(repo().join(format!("examples/{name}.yaml"))).unwrap();
    let cfg = config::validate_str(&source)
        .valid_config()
        .unwrap()
        .clone();
    let plan = config::gpu::plan(&cfg).unwrap();
    (cfg, plan)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join(format!("tests/fixtures/terraform-output/{name}.json")))
        .unwrap()
}

fn shape_error(value: Value) -> String {
    match hosts::parse_terraform_output(&value) {
        Err(e @ HostsError::Shape { .. }) => e.to_string(),
        other => panic!("expected a shape error, got {other:?}"),
    }
}

fn one_host(host: Value) -> Value {
    json!({"clusters": {"hpc": [host]}})
}

#[test]
fn the_full_output_form_parses() {
    let d = hosts::parse_terraform_output_str(&fixture("minimal-dev")).unwrap();
    assert_eq!(d.gpu_backend, Some(config::model::GpuBackend::Simulated));
    let names: Vec<&str> = d.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hsw-dev-controller-1",
            "hsw-dev-compute-1",
            "hsw-dev-compute-2",
            "hsw-dev-control-plane-1",
            "hsw-dev-gpu-worker-1"
        ]
    );
    let c1 = &d.hosts[1];
    assert_eq!(c1.role, Role::Compute);
    assert_eq!(c1.ip.to_string(), "192.168.100.11");
    assert_eq!(c1.gpu_units[0].kind, UnitKind::Mig);
    assert_eq!(c1.gpu_units[0].profile.as_deref(), Some("2g.20gb"));
    assert_eq!(c1.gpu_units[0].mdev_uuid, None);
}

#[test]
fn the_bare_value_parses_and_hosts_are_sorted() {
    let d = hosts::parse_terraform_output_str(&fixture("cpu-only")).unwrap();
    assert_eq!(d.gpu_backend, None);
    assert_eq!(d.hosts.len(), 7);
    let d = hosts::parse_terraform_output_str(&fixture("minimal-dev-no-units")).unwrap();
    let roles: Vec<Role> = d.hosts.iter().map(|h| h.role).collect();
    assert_eq!(
        roles,
        [
            Role::Controller,
            Role::Compute,
            Role::Compute,
            Role::ControlPlane,
            Role::GpuWorker
        ]
    );
    assert_eq!(d.hosts[1].name, "hsw-dev-compute-1");
}

#[test]
fn the_generate_output_shape_parses() {
    // What `hsw-cli generate`'s outputs.tf gives: more keys per host and unit, all ignored.
    let (cfg, plan) = example("production-like");
    let d = hosts::parse_terraform_output_str(&fixture("production-like")).unwrap();
    let d = hosts::resolve(&cfg, &plan, d).unwrap();
    let w = d.host("hyperscaler-emulation-gpu-worker-3").unwrap();
    assert_eq!(w.gpu_units[0].kind, UnitKind::Whole);
    assert_eq!(w.gpu_units[0].pci_address.as_deref(), Some("0000:ca:00.0"));
    assert!(!d.gpus_simulated(&cfg));
}

#[test]
fn a_missing_output_names_what_is_there() {
    let e = hosts::parse_terraform_output(&json!({"node_ip": {"value": "x"}})).unwrap_err();
    assert!(matches!(e, HostsError::NoInventoryOutput { .. }));
    assert!(e.to_string().contains("(it has: `node_ip`)"), "{e}");
    let e = hosts::parse_terraform_output(&json!({})).unwrap_err();
    assert!(e.to_string().contains("(it has: none)"), "{e}");
    assert!(e.to_string().contains("terraform apply"), "{e}");
    let e = hosts::parse_terraform_output_str("not json").unwrap_err();
    assert!(matches!(e, HostsError::NotJson(_)));
}

#[test]
fn shape_errors_say_where() {
    let e = shape_error(json!({"hsw_inventory": {"sensitive": false}}));
    assert!(e.contains("has no `value`"), "{e}");
    let e = shape_error(json!({"clusters": {"hpc": [{"name": "a", "ip": "1.2.3.4"}]}}));
    assert!(e.contains("clusters.hpc[0]") && e.contains("role"), "{e}");
    let e = shape_error(one_host(
        json!({"name": "a", "role": "gpu_worker", "ip": "1.2.3.4"}),
    ));
    assert!(
        e.contains("`gpu_worker` is not a role of the hpc cluster (controller, compute)"),
        "{e}"
    );
    let e = shape_error(one_host(
        json!({"name": "A_b", "role": "compute", "ip": "1.2.3.4"}),
    ));
    assert!(
        e.contains("clusters.hpc[0].name") && e.contains("not a host name"),
        "{e}"
    );
    let e = shape_error(one_host(
        json!({"name": "a", "role": "compute", "ip": "1.2.3"}),
    ));
    assert!(e.contains("`1.2.3` is not an IPv4 address"), "{e}");
    let e = shape_error(one_host(
        json!({"name": "a", "role": "compute", "ip": "1.2.3.4",
        "gpu_units": [{"kind": "mig", "device": "GPU-0"}]}),
    ));
    assert!(
        e.contains("clusters.hpc[0].gpu_units[0]") && e.contains("needs its `profile`"),
        "{e}"
    );
    let e = shape_error(one_host(
        json!({"name": "a", "role": "compute", "ip": "1.2.3.4",
        "gpu_units": [{"kind": "slice", "device": "GPU-0"}]}),
    ));
    assert!(e.contains("`slice` is not a GPU unit kind"), "{e}");
    let e = shape_error(one_host(
        json!({"name": "a", "role": "compute", "ip": "1.2.3.4",
        "gpu_units": [{"kind": "mig", "device": "GPU-0", "profile": "1g.10gb", "mdev_uuid": "nope"}]}),
    ));
    assert!(e.contains("`nope` is not a UUID"), "{e}");
    let e = shape_error(json!({"clusters": {"grid": []}}));
    assert!(e.contains("`hpc` and `cloud`"), "{e}");
    let e = shape_error(json!({"gpu_backend": "cuda", "clusters": {}}));
    assert!(e.contains("`cuda` is not a GPU backend"), "{e}");
}

#[test]
fn hosts_that_contradict_the_config_are_all_reported() {
    let (cfg, plan) = example("minimal-dev");
    let d = hosts::parse_terraform_output_str(&fixture("wrong-count")).unwrap();
    let Err(HostsError::Mismatch(problems)) = hosts::resolve(&cfg, &plan, d) else {
        panic!("expected a mismatch")
    };
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0]
        .contains("Terraform reports 1 compute VM but `clusters.hpc.compute_nodes` asks for 2"));
    assert!(problems[1].contains("192.168.100.99 outside `clusters.hpc.compute_nodes.ip_range`"));
}

#[test]
fn gpu_units_are_checked_against_the_config() {
    let (cfg, plan) = example("minimal-dev");
    let mut v: Value = serde_json::from_str(&fixture("minimal-dev")).unwrap();
    let hpc = &mut v["hsw_inventory"]["value"]["clusters"]["hpc"];
    hpc[1]["gpu_units"][0]["device"] = json!("GPU-9");
    hpc[2]["gpu_units"] = json!([]);
    hpc[0]["gpu_units"] = json!([{"kind": "whole", "device": "GPU-0"}]);
    hpc[0]["name"] = json!("hsw-dev-compute-1");
    let d = hosts::parse_terraform_output(&v).unwrap();
    let Err(e) = hosts::resolve(&cfg, &plan, d) else {
        panic!("expected a mismatch")
    };
    let text = e.to_string();
    for needle in [
        "host name `hsw-dev-compute-1` is used by more than one VM",
        "device `GPU-9`, which `global.gpu_allocation.devices` does not list",
        "`hsw-dev-compute-2` holds 0 GPU units but `clusters.hpc.compute_nodes.gpus_per_node` is 1",
        "holds 1 GPU unit but `clusters.hpc.controller` is not GPU-enabled",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn a_cluster_the_config_lacks_is_reported() {
    let (mut cfg, plan) = example("cpu-only");
    cfg.clusters.cloud = None;
    let d = hosts::parse_terraform_output_str(&fixture("cpu-only")).unwrap();
    let e = hosts::resolve(&cfg, &plan, d).unwrap_err().to_string();
    assert!(
        e.contains(
            "Terraform reports 3 VMs of the cloud cluster, which cluster.yaml does not define"
        ),
        "{e}"
    );
}

#[test]
fn planned_hosts_are_what_terraform_reports() {
    for (ex, fx) in [
        ("minimal-dev", "minimal-dev"),
        ("production-like", "production-like"),
        ("cpu-only", "cpu-only"),
    ] {
        let (cfg, plan) = example(ex);
        let planned = hosts::planned_hosts(&cfg, &plan);
        let reported = hosts::resolve(
            &cfg,
            &plan,
            hosts::parse_terraform_output_str(&fixture(fx)).unwrap(),
        )
        .unwrap();
        let strip = |d: &hosts::Deployment| {
            d.hosts
                .iter()
                .map(|h| {
                    let units: Vec<(UnitKind, String, Option<String>)> = h
                        .gpu_units
                        .iter()
                        .map(|u| (u.kind, u.device.clone(), u.profile.clone()))
                        .collect();
                    (h.name.clone(), h.role, h.ip, units)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&planned), strip(&reported), "{ex}");
    }
}

#[test]
fn simulated_unless_the_provider_or_config_says_nvml() {
    let (cfg, plan) = example("minimal-dev");
    let mut d = hosts::planned_hosts(&cfg, &plan);
    assert!(d.gpus_simulated(&cfg));
    d.gpu_backend = Some(config::model::GpuBackend::Nvml);
    assert!(!d.gpus_simulated(&cfg));
    let (cfg, plan) = example("cpu-only"); // no host.gpu_backend: auto
    let d = hosts::planned_hosts(&cfg, &plan);
    assert!(d.gpus_simulated(&cfg));
}

#[test]
fn inventory_groups_and_host_variables() {
    let (cfg, plan) = example("production-like");
    let d = hosts::resolve(
        &cfg,
        &plan,
        hosts::parse_terraform_output_str(&fixture("production-like")).unwrap(),
    )
    .unwrap();
    let inv = Inventory::build(&cfg, &d, &StateLayout::new("/state"));
    let ident = |s: &str| {
        s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    for g in &inv.groups {
        assert!(ident(g.name), "{}", g.name);
    }
    let group = |n: &str| inv.groups.iter().find(|g| g.name == n).unwrap();
    assert_eq!(
        group("k8s_cluster").children,
        ["kube_control_plane", "kube_node"]
    );
    assert_eq!(
        group("etcd").hosts,
        ["hyperscaler-emulation-control-plane-1"]
    );
    assert_eq!(group("kube_node").hosts.len(), 4);
    assert_eq!(group("slurm_compute").hosts.len(), 4);
    let c = inv.host("hyperscaler-emulation-compute-1").unwrap();
    assert_eq!(
        c["ansible_ssh_private_key_file"],
        "/state/ssh/hpc/id_ed25519"
    );
    assert_eq!(
        c["ansible_ssh_common_args"],
        "-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/state/ssh/hpc/known_hosts"
    );
    assert_eq!(c["slurm_gres"], "gpu:2g.20gb:1");
    assert_eq!(c["node_labels"], json!({"compute": "gpu"}));
    let w = inv.host("hyperscaler-emulation-cpu-worker-1").unwrap();
    assert_eq!(w["node_labels"], json!({"compute": "cpu"}));
    assert_eq!(
        w["ansible_ssh_private_key_file"],
        "/state/ssh/cloud/id_ed25519"
    );
    assert!(w.get("slurm_gres").is_none());
    let ctl = inv.host("hyperscaler-emulation-controller-1").unwrap();
    assert!(ctl.get("node_labels").is_none());
    assert_eq!(inv.host_json("nope"), json!({}));
    let list = inv.to_list_json();
    assert!(list["_meta"]["hostvars"].is_object());
}

#[test]
fn odd_state_paths_are_quoted_for_ssh() {
    let (cfg, plan) = example("cpu-only");
    let d = hosts::planned_hosts(&cfg, &plan);
    let inv = Inventory::build(&cfg, &d, &StateLayout::new("/my state/it's"));
    let c = inv.host("cpu-only-compute-1").unwrap();
    assert_eq!(
        c["ansible_ssh_common_args"],
        r"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile='/my state/it'\''s/ssh/hpc/known_hosts'"
    );
}
