//! The Slurm checker: what it rejects in the typed model (names, duplicates, partitions, gres types, times,
//! addresses, gres.conf against slurm.conf, cgroup.conf) and in text (unknown keys, bad Gres values).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hsw_core::ansible::hosts;
use hsw_core::config;
use hsw_core::slurm::check::{check, check_gres_text, check_text};
use hsw_core::slurm::model::{Gres, GresLine, Key, NodeDef, PartitionDef};
use hsw_core::slurm::{self, SlurmError, SlurmFiles};

/// The default config's files (simulated MIG on two compute nodes), which pass.
fn valid() -> SlurmFiles {
    let cfg = config::validate_str(config::DEFAULT_CONFIG)
        .valid_config()
        .unwrap()
        .clone();
    let plan = config::gpu::plan(&cfg).unwrap();
    slurm::build(&cfg, &hosts::planned_hosts(&cfg, &plan)).unwrap()
}

/// The findings for a mutated copy of the valid files; asserts one of them contains `needle`.
fn rejects(mutate: impl FnOnce(&mut SlurmFiles), needle: &str) {
    let mut f = valid();
    mutate(&mut f);
    let found = check(&f.slurm_conf, &f.gres_conf, &f.cgroup_conf);
    assert!(
        found.iter().any(|m| m.contains(needle)),
        "expected a finding with `{needle}`, got {found:#?}"
    );
    match f.render() {
        Err(SlurmError::Invalid(list)) => assert!(!list.is_empty()),
        other => panic!("render accepted invalid files: {other:?}"),
    }
}

fn node(f: &mut SlurmFiles) -> &mut NodeDef {
    f.slurm_conf.nodes.first_mut().unwrap()
}

#[test]
fn the_valid_files_pass() {
    let f = valid();
    assert_eq!(
        check(&f.slurm_conf, &f.gres_conf, &f.cgroup_conf),
        Vec::<String>::new()
    );
    let text = f.render().unwrap();
    assert!(check_text(&text.slurm_conf).is_empty());
    assert!(check_gres_text(&text.gres_conf).is_empty());
}

#[test]
fn node_names_must_be_slurm_names() {
    rejects(
        |f| {
            let n = node(f);
            n.name = "bad name!".into();
        },
        "is not a Slurm name",
    );
}

#[test]
fn duplicate_node_names_are_rejected() {
    rejects(
        |f| {
            let dup = f.slurm_conf.nodes[0].clone();
            f.slurm_conf.nodes.push(dup);
        },
        "defined more than once",
    );
}

#[test]
fn partitions_name_only_existing_nodes() {
    rejects(
        |f| f.slurm_conf.partitions[0].nodes.push("ghost".into()),
        "lists node `ghost`, which slurm.conf does not define",
    );
    rejects(|f| f.slurm_conf.partitions[0].nodes.clear(), "has no nodes");
    rejects(|f| f.slurm_conf.partitions.clear(), "defines no partition");
}

#[test]
fn one_default_partition_at_most() {
    rejects(
        |f| {
            for p in &mut f.slurm_conf.partitions {
                p.default = true;
            }
        },
        "more than one partition is the default",
    );
}

#[test]
fn duplicate_partitions_are_rejected() {
    rejects(
        |f| {
            let p: PartitionDef = f.slurm_conf.partitions[0].clone();
            f.slurm_conf.partitions.push(p);
        },
        "partition `gpu` is defined more than once",
    );
}

#[test]
fn gres_needs_a_gres_types_entry() {
    rejects(
        |f| f.slurm_conf.settings.retain(|(k, _)| *k != Key::GresTypes),
        "GresTypes does not list",
    );
}

#[test]
fn gres_types_must_be_names_and_counts_positive() {
    rejects(
        |f| node(f).gres[0].kind = "1g 10gb".into(),
        "gres type `1g 10gb`",
    );
    rejects(|f| node(f).gres[0].count = 0, "with count 0");
    rejects(
        |f| {
            node(f).gres.push(Gres {
                name: "gpu".into(),
                kind: "2g.20gb".into(),
                count: 1,
            })
        },
        "twice",
    );
}

#[test]
fn max_time_must_be_a_slurm_time() {
    rejects(
        |f| f.slurm_conf.partitions[0].max_time = "1-25".into(),
        "is not a Slurm time",
    );
    rejects(
        |f| f.slurm_conf.partitions[1].max_time = "a day".into(),
        "is not a Slurm time",
    );
}

#[test]
fn node_addresses_and_sizes_are_checked() {
    rejects(
        |f| node(f).addr = "compute-1".into(),
        "is not an IPv4 address",
    );
    rejects(|f| node(f).cpus = 0, "CPUs=0");
    rejects(|f| node(f).real_memory = 0, "RealMemory=0");
}

#[test]
fn settings_are_checked() {
    rejects(
        |f| {
            f.slurm_conf
                .settings
                .retain(|(k, _)| *k != Key::SlurmctldHost)
        },
        "does not set SlurmctldHost",
    );
    rejects(
        |f| {
            for (k, v) in &mut f.slurm_conf.settings {
                if *k == Key::SlurmctldHost {
                    *v = "controller".into();
                }
            }
        },
        "is not `name(IPv4 address)`",
    );
    rejects(
        |f| {
            for (k, v) in &mut f.slurm_conf.settings {
                if *k == Key::ClusterName {
                    *v = "hsw-dev".into();
                }
            }
        },
        "ClusterName `hsw-dev`",
    );
    rejects(
        |f| {
            f.slurm_conf
                .settings
                .push((Key::AuthType, "auth/none".into()))
        },
        "AuthType is set more than once",
    );
    rejects(
        |f| {
            f.slurm_conf
                .settings
                .push((Key::MpiDefault, "pmi 2".into()))
        },
        "holds spaces",
    );
}

#[test]
fn gres_conf_must_agree_with_slurm_conf() {
    rejects(
        |f| {
            f.gres_conf.lines[0].file = None;
            f.gres_conf.lines[0].count = Some(2);
        },
        "slurmd would drain the node",
    );
    rejects(
        |f| f.gres_conf.lines[0].node = "ghost".into(),
        "gres.conf names node `ghost`",
    );
    rejects(
        |f| {
            f.gres_conf.lines[0].count = Some(1);
        },
        "both File and Count",
    );
    rejects(
        |f| {
            f.gres_conf.lines[0].count = None;
            f.gres_conf.lines[0].file = Some("nvidia0".into());
        },
        "not a device under /dev",
    );
    rejects(
        |f| {
            f.gres_conf.lines.push(GresLine {
                comment: None,
                node: f.slurm_conf.nodes[0].name.clone(),
                name: "gpu".into(),
                kind: "7g.80gb".into(),
                file: None,
                count: Some(1),
            })
        },
        "which its Gres in slurm.conf does not list",
    );
}

#[test]
fn cgroup_conf_values_are_checked() {
    rejects(
        |f| {
            f.cgroup_conf
                .settings
                .push(("ConstrainSwapSpace", "yes".into()))
        },
        "not one hsw knows",
    );
    rejects(
        |f| f.cgroup_conf.settings[1].1 = "true".into(),
        "has the value `true`",
    );
}

#[test]
fn text_with_unknown_keys_is_rejected() {
    let found = check_text("ClusterName=a\nSlurmctldHots=x(1.2.3.4)\n");
    assert!(
        found[0].contains("line 2: `SlurmctldHots` is not a key hsw writes"),
        "{found:?}"
    );
    let found = check_text("NodeName=n1 NodeAddr=1.2.3.4 Weight=3\n");
    assert!(
        found[0].contains("`Weight` is not a NodeName attribute"),
        "{found:?}"
    );
    let found = check_text("ClusterName=a\nclustername=b\n");
    assert!(
        found[0].contains("ClusterName is set again")
            || found[0].contains("clustername is set again"),
        "{found:?}"
    );
    let found = check_text("AuthType\n");
    assert!(found[0].contains("is not `Key=value`"), "{found:?}");
}

#[test]
fn text_with_a_bad_gres_value_is_rejected() {
    // Slurm reads `gpu:a100:x` as `gpu:a100:1,gpu:x:1` without a word.
    let found = check_text("NodeName=n1 NodeAddr=1.2.3.4 Gres=gpu:a100:x\n");
    assert!(found[0].contains("Gres entry `gpu:a100:x`"), "{found:?}");
    assert!(check_text("NodeName=n1 NodeAddr=1.2.3.4 Gres=gpu:1g.10gb:2,gpu:a100:1\n").is_empty());
    let found = check_gres_text("Name=gpu File=/dev/nvidia0\nNodeName=n Name=gpu Cores=0-3\n");
    assert_eq!(found.len(), 2, "{found:?}");
}
