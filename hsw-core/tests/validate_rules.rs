//! One test (at least) per validation rule. Each case edits the embedded default config
//! textually, validates it, and checks the rule id, the pointer and the position.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hsw_core::config::{validate_str, DEFAULT_CONFIG};
use hsw_core::diag::{Diagnostic, Severity};

fn edit(pairs: &[(&str, &str)]) -> String {
    let mut s = DEFAULT_CONFIG.to_owned();
    for (from, to) in pairs {
        assert!(
            s.contains(from),
            "the default config no longer contains {from:?}"
        );
        s = s.replacen(from, to, 1);
    }
    s
}

fn findings(src: &str) -> Vec<Diagnostic> {
    validate_str(src).report.diagnostics
}

#[track_caller]
fn expect(src: &str, rule: &str, path: &str) -> Diagnostic {
    let all = findings(src);
    match all.iter().find(|d| d.rule == rule && d.path == path) {
        Some(d) => d.clone(),
        None => panic!("expected {rule} at {path}, got:\n{all:#?}"),
    }
}

#[track_caller]
fn expect_error(src: &str, rule: &str, path: &str) -> Diagnostic {
    let d = expect(src, rule, path);
    assert_eq!(d.severity, Severity::Error, "{d:?}");
    assert!(d.line.is_some(), "no position: {d:?}");
    d
}

#[test]
fn default_is_valid_without_warnings() {
    let all = findings(DEFAULT_CONFIG);
    assert!(all.is_empty(), "{all:#?}");
}

#[test]
fn every_example_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let src = std::fs::read_to_string(&path).unwrap();
            let v = validate_str(&src);
            assert!(
                !v.report.has_errors(),
                "{}: {:#?}",
                path.display(),
                v.report
            );
            assert!(
                src.starts_with("# yaml-language-server: $schema="),
                "{} lacks the modeline",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 5, "expected at least 5 examples, found {n}");
}

// ---------------------------------------------------------------- YAML level

#[test]
fn yaml_syntax_error_has_a_line() {
    let d = findings("version: \"1.0\"\nmetadata: {name: x\n");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].rule, "yaml.syntax");
    assert!(d[0].line.is_some());
}

#[test]
fn yaml_duplicate_key() {
    let src = edit(&[(
        "  description: Minimal",
        "  name: again\n  description: Minimal",
    )]);
    let d = expect_error(&src, "yaml.duplicate-key", "/metadata/name");
    assert_eq!(d.line, Some(9));
}

#[test]
fn yaml_empty_file() {
    let d = findings("");
    assert_eq!(d[0].rule, "yaml.empty");
    assert_eq!(d[0].line, Some(1));
}

// ---------------------------------------------------------------- schema level

#[test]
fn unknown_key_points_at_the_key_with_a_suggestion() {
    let src = edit(&[("    compute_nodes:", "    computenodes:")]);
    let all = findings(&src);
    let d = all.iter().find(|d| d.rule == "schema.unknown-key").unwrap();
    assert_eq!(d.path, "/clusters/hpc");
    assert_eq!(d.hint.as_deref(), Some("did you mean `compute_nodes`?"));
    // line of `computenodes:` in the default file, column of the key
    let line = src
        .lines()
        .position(|l| l.trim_start().starts_with("computenodes:"))
        .unwrap()
        + 1;
    assert_eq!((d.line, d.column), (Some(line), Some(5)));
    // the typo is reported once: not again as the missing `compute_nodes`
    assert!(
        !all.iter().any(|d| d.rule == "schema.missing-key"),
        "{all:#?}"
    );
    // a key with no close match is removed for the semantic pass and the missing key is reported
    let src = edit(&[("    compute_nodes:", "    xyzzy:")]);
    expect_error(&src, "schema.missing-key", "/clusters/hpc");
}

#[test]
fn all_errors_at_once() {
    let src = edit(&[
        ("      cpu_cores: 1\n      memory_gb: 1\n      disk_gb: 8\n      ip_address: 192.168.100.10", "      cpu_cores: 0\n      memory_gb: 1\n      disk_gb: 8\n      ip_address: 192.168.100.10"),
        ("cni: bridge", "cni: calicoo"),
        ("default_partition: gpu", "default_partition: gpus"),
    ]);
    let all = findings(&src);
    assert!(all.iter().any(|d| d.rule == "schema.minimum"), "{all:#?}");
    assert!(all.iter().any(|d| d.rule == "schema.enum"), "{all:#?}");
    assert!(
        all.iter().any(|d| d.rule == "slurm.default-partition"),
        "{all:#?}"
    );
}

#[test]
fn resources_within_bounds() {
    expect_error(
        &edit(&[(
            "memory_gb: 1\n      disk_gb: 8\n      ip_address",
            "memory_gb: 100000\n      disk_gb: 8\n      ip_address",
        )]),
        "schema.maximum",
        "/clusters/hpc/controller/memory_gb",
    );
    expect_error(
        &edit(&[("count: 2", "count: 0")]),
        "schema.minimum",
        "/clusters/hpc/compute_nodes/count",
    );
    expect_error(
        &edit(&[(
            "disk_gb: 8\n      ip_address",
            "disk_gb: -3\n      ip_address",
        )]),
        "schema.minimum",
        "/clusters/hpc/controller/disk_gb",
    );
}

#[test]
fn enums_for_kubernetes() {
    let d = expect_error(
        &edit(&[("cni: bridge", "cni: calicoo")]),
        "schema.enum",
        "/clusters/cloud/kubernetes_config/cni",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `calico`?"));
    expect_error(
        &edit(&[("ingress: nginx", "ingress: haproxy")]),
        "schema.enum",
        "/clusters/cloud/kubernetes_config/ingress",
    );
    expect_error(
        &edit(&[("storage_class: local-path", "storage_class: ceph")]),
        "schema.enum",
        "/clusters/cloud/kubernetes_config/storage_class",
    );
}

#[test]
fn kubernetes_source_cni_and_version_agree() {
    let d = expect_error(
        &edit(&[("cni: bridge", "cni: bridge\n      source: packages")]),
        "kubernetes.bridge-needs-bundle",
        "/clusters/cloud/kubernetes_config/cni",
    );
    assert!(d.message.contains("set source: bundle"), "{}", d.message);
    let d = expect_error(
        &edit(&[("cni: bridge", "cni: bridge\n      version: \"1.30\"")]),
        "kubernetes.version-not-in-bundle",
        "/clusters/cloud/kubernetes_config/version",
    );
    assert!(
        d.message
            .starts_with("version 1.30 is not the bundle's Kubernetes (1.34)"),
        "{}",
        d.message
    );
    for fine in [
        "cni: bridge\n      version: \"1.34\"",
        "cni: calico\n      source: packages\n      version: \"1.30\"",
        "cni: flannel",
    ] {
        let src = edit(&[("cni: bridge", fine)]);
        let all = findings(&src);
        assert!(
            !all.iter().any(|d| d.rule.starts_with("kubernetes.")),
            "{fine}: {all:#?}"
        );
    }
}

#[test]
fn version_must_be_1_0() {
    expect_error(
        &edit(&[("version: \"1.0\"", "version: \"2.0\"")]),
        "schema.pattern",
        "/version",
    );
    // an unquoted 1.0 is a number
    expect_error(
        &edit(&[("version: \"1.0\"", "version: 1.0")]),
        "schema.type",
        "/version",
    );
}

#[test]
fn bridge_name_at_most_15_characters() {
    let d = expect_error(
        &edit(&[("bridge: hswbr-hpc", "bridge: a-very-long-bridge-name")]),
        "schema.pattern",
        "/global/networks/hpc_network/bridge",
    );
    assert!(d.hint.unwrap().contains("15"));
}

#[test]
fn pci_address_format() {
    expect_error(
        &edit(&[("\"0000:65:00.0\"", "\"65:00.0\"")]),
        "schema.pattern",
        "/global/gpu_allocation/devices/0/pci_address",
    );
}

// ---------------------------------------------------------------- networks

#[test]
fn subnet_must_be_a_network_address() {
    let d = expect_error(
        &edit(&[("subnet: 192.168.100.0/24", "subnet: 192.168.100.5/24")]),
        "network.subnet-invalid",
        "/global/networks/hpc_network/subnet",
    );
    assert!(d.message.contains("192.168.100.0/24"), "{}", d.message);
}

#[test]
fn subnets_must_not_overlap() {
    expect_error(
        &edit(&[("subnet: 192.168.200.0/24", "subnet: 192.168.0.0/16")]),
        "network.subnet-overlap",
        "/global/networks/hpc_network/subnet",
    );
}

#[test]
fn bridges_unique() {
    expect_error(
        &edit(&[("bridge: hswbr-cloud", "bridge: hswbr-hpc")]),
        "network.bridge-duplicate",
        "/global/networks/hpc_network/bridge",
    );
}

#[test]
fn gateway_defaults_to_first_usable_and_nodes_may_not_take_it() {
    let d = expect_error(
        &edit(&[("ip_address: 192.168.100.10", "ip_address: 192.168.100.1")]),
        "ip.gateway",
        "/clusters/hpc/controller/ip_address",
    );
    assert!(d.message.contains("192.168.100.1"));
}

#[test]
fn explicit_gateway_frees_the_first_address() {
    let src = edit(&[
        (
            "      bridge: hswbr-hpc",
            "      bridge: hswbr-hpc\n      gateway: 192.168.100.254",
        ),
        ("ip_address: 192.168.100.10", "ip_address: 192.168.100.1"),
    ]);
    assert!(
        !findings(&src).iter().any(|d| d.rule == "ip.gateway"),
        "{:#?}",
        findings(&src)
    );
    let src = edit(&[
        (
            "      bridge: hswbr-hpc",
            "      bridge: hswbr-hpc\n      gateway: 192.168.100.254",
        ),
        (
            "ip_range: 192.168.100.11-12",
            "ip_range: 192.168.100.253-254",
        ),
    ]);
    expect_error(&src, "ip.gateway", "/clusters/hpc/compute_nodes/ip_range");
}

#[test]
fn gateway_must_be_inside_the_subnet() {
    expect_error(
        &edit(&[(
            "      bridge: hswbr-hpc",
            "      bridge: hswbr-hpc\n      gateway: 10.0.0.1",
        )]),
        "network.gateway",
        "/global/networks/hpc_network/gateway",
    );
}

#[test]
fn cluster_network_must_exist() {
    let d = expect_error(
        &edit(&[("    hpc_network:", "    hpc_net:")]),
        "network.unknown",
        "/clusters/hpc",
    );
    assert!(d.hint.unwrap().contains("hpc_net"));
}

// ---------------------------------------------------------------- addresses

#[test]
fn node_ips_inside_the_cluster_subnet() {
    expect_error(
        &edit(&[("ip_address: 192.168.100.10", "ip_address: 192.168.200.50")]),
        "ip.outside-subnet",
        "/clusters/hpc/controller/ip_address",
    );
    expect_error(
        &edit(&[(
            "ip_range: 192.168.100.11-12",
            "ip_range: 192.168.100.254-255",
        )]),
        "ip.reserved",
        "/clusters/hpc/compute_nodes/ip_range",
    );
}

#[test]
fn node_ips_unique() {
    let d = expect_error(
        &edit(&[("ip_range: 192.168.100.11-12", "ip_range: 192.168.100.10-11")]),
        "ip.duplicate",
        "/clusters/hpc/compute_nodes/ip_range",
    );
    assert!(d.message.contains("192.168.100.10"));
}

#[test]
fn ranges_ascending() {
    expect_error(
        &edit(&[("ip_range: 192.168.100.11-12", "ip_range: 192.168.100.12-11")]),
        "ip.range-invalid",
        "/clusters/hpc/compute_nodes/ip_range",
    );
    expect_error(
        &edit(&[(
            "ip_range: 192.168.100.11-12",
            "ip_range: 192.168.100.20-192.168.100.11",
        )]),
        "ip.range-invalid",
        "/clusters/hpc/compute_nodes/ip_range",
    );
}

#[test]
fn ranges_as_large_as_count() {
    let d = expect_error(
        &edit(&[("ip_range: 192.168.100.11-12", "ip_range: 192.168.100.11")]),
        "ip.range-size",
        "/clusters/hpc/compute_nodes/ip_range",
    );
    assert!(d.message.contains("count` is 2"), "{}", d.message);
}

#[test]
fn full_ranges_are_understood() {
    let src = edit(&[
        ("subnet: 192.168.100.0/24", "subnet: 172.20.0.0/16"),
        ("ip_address: 192.168.100.10", "ip_address: 172.20.0.10"),
        (
            "ip_range: 192.168.100.11-12",
            "ip_range: 172.20.1.1-172.20.4.250",
        ),
    ]);
    let all = findings(&src);
    assert!(all.is_empty(), "{all:#?}");
}

// ---------------------------------------------------------------- slurm

#[test]
fn slurm_time_format() {
    for bad in ["24h", "25:61:00", "1-25:00", "abc", "0"] {
        expect_error(
            &edit(&[(
                "max_job_time: \"24:00:00\"",
                &format!("max_job_time: \"{bad}\""),
            )]),
            "slurm.time-format",
            "/clusters/hpc/slurm_config/max_job_time",
        );
    }
    for good in [
        "30",
        "30:00",
        "100:00:00",
        "2-00",
        "2-12:30",
        "7-00:00:00",
        "UNLIMITED",
    ] {
        let src = edit(&[(
            "max_job_time: \"24:00:00\"",
            &format!("max_job_time: \"{good}\""),
        )]);
        assert!(
            !findings(&src).iter().any(|d| d.rule == "slurm.time-format"),
            "{good} refused"
        );
    }
}

#[test]
fn default_partition_listed() {
    let d = expect_error(
        &edit(&[("default_partition: gpu", "default_partition: gpus")]),
        "slurm.default-partition",
        "/clusters/hpc/slurm_config/default_partition",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `gpu`?"));
}

#[test]
fn partitions_unique_and_well_named() {
    expect_error(
        &edit(&[("        - debug\n", "        - gpu\n")]),
        "slurm.partition-duplicate",
        "/clusters/hpc/slurm_config/partitions/1",
    );
    expect_error(
        &edit(&[("        - debug\n", "        - \"de bug\"\n")]),
        "slurm.partition-name",
        "/clusters/hpc/slurm_config/partitions/1",
    );
    // A partition object's name is checked too, at its `name`.
    expect_error(
        &edit(&[("        - name: gpu\n", "        - name: \"g pu\"\n")]),
        "slurm.partition-name",
        "/clusters/hpc/slurm_config/partitions/0/name",
    );
}

/// The plain list of names that 1.0 files have keeps its meaning: valid, every node in every partition.
#[test]
fn plain_partition_names_still_work() {
    let src = DEFAULT_CONFIG.replace(
        "      partitions:\n        - name: gpu\n          nodes: [gpu]\n          default_time: \"1:00:00\"\n          max_time: \"24:00:00\"\n        - debug\n",
        "      partitions: [\"gpu\", \"debug\"]\n",
    );
    assert_ne!(
        src, DEFAULT_CONFIG,
        "the default's partitions changed shape"
    );
    let v = validate_str(&src);
    assert!(!v.report.has_errors(), "{:#?}", v.report.diagnostics);
}

#[test]
fn partitions_hold_nodes_of_known_sets() {
    let d = expect_error(
        &edit(&[("nodes: [gpu]", "nodes: [gpus]")]),
        "slurm.partition-nodes",
        "/clusters/hpc/slurm_config/partitions/0/nodes/0",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `gpu`?"));
    // The compute nodes have GPUs: a partition of only CPU nodes holds none.
    expect_error(
        &edit(&[("nodes: [gpu]", "nodes: [cpu]")]),
        "slurm.partition-empty",
        "/clusters/hpc/slurm_config/partitions/0/nodes",
    );
    for ok in [
        "nodes: [all]",
        "nodes: [cpu, gpu]",
        "nodes: [compute_nodes]",
    ] {
        let f = findings(&edit(&[("nodes: [gpu]", ok)]));
        assert!(
            !f.iter().any(|d| d.rule.starts_with("slurm.partition")),
            "{ok}: {f:#?}"
        );
    }
    expect_error(
        &edit(&[("default_time: \"1:00:00\"", "default_time: \"1h\"")]),
        "slurm.time-format",
        "/clusters/hpc/slurm_config/partitions/0/default_time",
    );
}

#[test]
fn users_accounts_and_qos_reference_each_other() {
    let d = expect_error(
        &edit(&[("        account: research", "        account: reserch")]),
        "hpc.user-account",
        "/clusters/hpc/users/0/account",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `research`?"));
    expect_error(
        &edit(&[("qos: [short]", "qos: [long]")]),
        "hpc.qos-unknown",
        "/clusters/hpc/accounts/0/qos/0",
    );
    expect_error(
        &edit(&[(
            "        fairshare: 100",
            "        fairshare: 100\n        parent: nowhere",
        )]),
        "hpc.account-parent",
        "/clusters/hpc/accounts/0/parent",
    );
    expect_error(
        &edit(&[(
            "        fairshare: 100",
            "        fairshare: 100\n        parent: research",
        )]),
        "hpc.account-parent",
        "/clusters/hpc/accounts/0/parent",
    );
    expect_error(
        &edit(&[("      - name: research", "      - name: root")]),
        "hpc.account-reserved",
        "/clusters/hpc/accounts/0/name",
    );
    expect_error(
        &edit(&[(
            "        max_wall: \"01:00:00\"",
            "        max_wall: \"1 hour\"",
        )]),
        "slurm.time-format",
        "/clusters/hpc/qos/0/max_wall",
    );
}

#[test]
fn ssh_public_keys_are_one_authorized_keys_line() {
    let with = |key: &str| {
        edit(&[(
            "        account: research\n",
            &format!("        account: research\n        ssh_public_key: {key}\n"),
        )])
    };
    let good = with("\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0eFq3 alice@laptop\"");
    assert!(
        !validate_str(&good).report.has_errors(),
        "{:#?}",
        findings(&good)
    );
    for bad in [
        "\"ssh-ed25519 AAAA\\nssh-rsa BBBB\"",
        "\"command=\\\"x\\\" ssh-ed25519 AAAA\"",
    ] {
        assert!(
            validate_str(&with(bad)).report.has_errors(),
            "{bad} accepted"
        );
    }
}

#[test]
fn gpu_limits_need_gpu_nodes() {
    expect_error(
        &edit(&[
            (
                "      gpu_enabled: true\n      ip_range: 192.168.100.11-12",
                "      ip_range: 192.168.100.11-12",
            ),
            ("nodes: [gpu]", "nodes: [all]"),
        ]),
        "hpc.qos-gpus",
        "/clusters/hpc/qos/0/max_gpus_per_user",
    );
}

#[test]
fn uids_unique_and_above_the_login_user() {
    for bad in ["999", "1000", "70000"] {
        expect_error(
            &edit(&[("uid: 2001", &format!("uid: {bad}"))]),
            "hpc.user-uid",
            "/clusters/hpc/users/0/uid",
        );
    }
    let two = "      - name: alice\n        uid: 2001\n        account: research\n      - name: bob\n        uid: 2001\n        account: research\n";
    expect_error(
        &edit(&[(
            "      - name: alice\n        uid: 2001\n        account: research\n",
            two,
        )]),
        "hpc.user-uid-duplicate",
        "/clusters/hpc/users/1/uid",
    );
    expect_error(
        &edit(&[("      - name: alice", "      - name: hsw")]),
        "hpc.user-reserved",
        "/clusters/hpc/users/0/name",
    );
}

#[test]
fn shared_storage_paths_are_plain_and_apart() {
    let with = |home: &str, scratch: &str| {
        edit(&[(
            "    accounts:\n",
            &format!("    shared_storage:\n      home: {home}\n      scratch: {scratch}\n    accounts:\n"),
        )])
    };
    expect_error(
        &with("/home", "/home/scratch"),
        "hpc.storage-path",
        "/clusters/hpc/shared_storage/scratch",
    );
    expect_error(
        &with("/etc/home", "/scratch"),
        "hpc.storage-path",
        "/clusters/hpc/shared_storage/home",
    );
    expect_error(
        &with("/home/../x", "/scratch"),
        "hpc.storage-path",
        "/clusters/hpc/shared_storage/home",
    );
    assert!(!validate_str(&with("/srv/home", "/srv/scratch"))
        .report
        .has_errors());
}

// ---------------------------------------------------------------- kubernetes

#[test]
fn kubernetes_cidrs_do_not_overlap_networks() {
    let src = edit(&[(
        "storage_class: local-path",
        "storage_class: local-path\n      pod_subnet: 192.168.0.0/16",
    )]);
    expect_error(
        &src,
        "kubernetes.cidr-overlap",
        "/clusters/cloud/kubernetes_config/pod_subnet",
    );
}

// ---------------------------------------------------------------- GPUs

#[test]
fn gpu_ids_and_pci_addresses_unique() {
    let second = "      - id: GPU-0\n        pci_address: \"0000:65:00.0\"\n        model: NVIDIA A100-SXM4-80GB\n        mig_capable: true\n";
    let src = edit(&[("    strategy: mig", &format!("{second}    strategy: mig"))]);
    expect_error(
        &src,
        "gpu.id-duplicate",
        "/global/gpu_allocation/devices/1/id",
    );
    expect_error(
        &src,
        "gpu.pci-duplicate",
        "/global/gpu_allocation/devices/1/pci_address",
    );
}

#[test]
fn mig_profiles_only_on_mig_capable_devices() {
    expect_error(
        &edit(&[("mig_capable: true", "mig_capable: false")]),
        "gpu.not-mig-capable",
        "/global/gpu_allocation/devices/0/allowed_mig_profiles",
    );
}

#[test]
fn profiles_checked_against_the_model_table() {
    let d = expect_error(
        &edit(&[("\"1g.10gb\", \"2g.20gb\"", "\"1g.5gb\", \"2g.20gb\"")]),
        "gpu.unknown-profile",
        "/global/gpu_allocation/devices/0/allowed_mig_profiles/0",
    );
    assert!(
        d.hint
            .as_deref()
            .unwrap()
            .starts_with("did you mean `1g.10gb`?"),
        "{d:?}"
    );
}

#[test]
fn unknown_models_warn() {
    let d = expect(
        &edit(&[("model: NVIDIA A100-SXM4-80GB", "model: NVIDIA Q9000")]),
        "gpu.unknown-model",
        "/global/gpu_allocation/devices/0/model",
    );
    assert_eq!(d.severity, Severity::Warning);
}

#[test]
fn strategy_mig_allows_no_whole_gpus() {
    let src = edit(&[(
        "      cloud: 1\n",
        "      cloud: 1\n    whole_gpus:\n      hpc: 1\n",
    )]);
    expect_error(&src, "gpu.strategy", "/global/gpu_allocation/whole_gpus");
}

#[test]
fn strategy_whole_allows_no_mig_slices() {
    expect_error(
        &edit(&[("strategy: mig", "strategy: whole")]),
        "gpu.strategy",
        "/global/gpu_allocation/mig_slices",
    );
}

#[test]
fn oversubscription_is_refused() {
    // 3g.40gb only, 3 instances: two 3g fill the GPU.
    let src = edit(&[("[\"1g.10gb\", \"2g.20gb\", \"3g.40gb\"]", "[\"3g.40gb\"]")]);
    expect_error(&src, "gpu.infeasible", "/global/gpu_allocation");
    // 8 × 1g on a 7-slice GPU
    let src = edit(&[(
        "      hpc: 2\n      cloud: 1",
        "      hpc: 7\n      cloud: 1",
    )]);
    expect_error(&src, "gpu.infeasible", "/global/gpu_allocation");
}

#[test]
fn per_cluster_profile_choice_must_exist() {
    let src = edit(&[(
        "    mig_slices:",
        "    mig_profiles:\n      hpc: [\"1g.5gb\"]\n    mig_slices:",
    )]);
    expect_error(
        &src,
        "gpu.unknown-profile",
        "/global/gpu_allocation/mig_profiles/hpc/0",
    );
}

#[test]
fn whole_gpus_within_non_mig_devices() {
    let src = edit(&[
        ("strategy: mig", "strategy: hybrid"),
        (
            "      cloud: 1\n",
            "      cloud: 1\n    whole_gpus:\n      cloud: 1\n",
        ),
    ]);
    expect_error(&src, "gpu.infeasible", "/global/gpu_allocation");
}

#[test]
fn gpu_enabled_groups_get_a_unit_per_node() {
    let d = expect_error(
        &edit(&[(
            "      hpc: 2\n      cloud: 1",
            "      hpc: 1\n      cloud: 1",
        )]),
        "gpu.units",
        "/clusters/hpc/compute_nodes/gpu_enabled",
    );
    assert!(d.message.contains("needing 2"), "{}", d.message);
}

#[test]
fn gpu_allocation_may_be_omitted_without_gpu_nodes() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/cpu-only.yaml"
    ))
    .unwrap();
    assert!(findings(&src).is_empty());
    let src = src.replace(
        "ip_range: 192.168.120.11-13}",
        "ip_range: 192.168.120.11-13, gpu_enabled: true}",
    );
    expect_error(
        &src,
        "gpu.missing-allocation",
        "/clusters/hpc/compute_nodes/gpu_enabled",
    );
}

#[test]
fn the_seed_example_is_caught() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/validate/seed-example.yaml"
    ))
    .unwrap();
    let all = findings(&src);
    let bad: Vec<_> = all
        .iter()
        .filter(|d| d.rule == "gpu.unknown-profile")
        .collect();
    assert_eq!(bad.len(), 3, "{all:#?}");
    assert!(bad[0].message.contains("1g.5gb"));
}

#[test]
fn clusters_sharing_a_network_warn() {
    let src = edit(&[(
        "  cloud:\n    control_plane:",
        "  cloud:\n    network: hpc_network\n    control_plane:",
    )]);
    let d = expect(&src, "network.shared", "/clusters/cloud");
    assert_eq!(d.severity, Severity::Warning);
}

#[test]
fn units_for_a_missing_cluster_are_refused() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/h100-all-mig.yaml"
    ))
    .unwrap();
    let start = src.find("  cloud:\n    control_plane").unwrap();
    let without_cloud = &src[..start];
    expect_error(
        without_cloud,
        "gpu.unknown-cluster",
        "/global/gpu_allocation",
    );
}

#[test]
fn a_unit_no_vm_takes_is_refused() {
    let d = expect_error(
        &edit(&[(
            "      hpc: 2\n      cloud: 1",
            "      hpc: 3\n      cloud: 1",
        )]),
        "gpu.units-unused",
        "/global/gpu_allocation",
    );
    assert!(d.message.contains("1 would reach no VM"), "{}", d.message);
    assert!(
        d.hint.as_deref().unwrap_or("").contains("mig_slices.hpc"),
        "{d:?}"
    );
}

const ATTACH_AT: &str = "    mig_slices:\n      hpc: 2\n      cloud: 1\n";

fn with_attach(attach: &str) -> String {
    edit(&[(ATTACH_AT, &format!("{ATTACH_AT}    attach:\n{attach}"))])
}

#[test]
fn attach_written_out_is_the_default_meaning() {
    let src = with_attach(
        "      hpc: {mig: vgpu, whole: passthrough, vgpu_types: {\"2g.20gb\": \"NVIDIA A100DX-2-20C\"}}\n",
    );
    let v = validate_str(&src);
    assert!(
        v.report.diagnostics.is_empty(),
        "{:#?}",
        v.report.diagnostics
    );
    let plain = validate_str(DEFAULT_CONFIG).config.unwrap();
    let explicit = v.config.unwrap();
    let plan = hsw_core::config::gpu::plan(&plain).unwrap();
    let a = hsw_core::layout::Layout::checked(&plain, &plan).unwrap();
    let b = hsw_core::layout::Layout::checked(&explicit, &plan).unwrap();
    assert_eq!(a.targets, b.targets);
}

#[test]
fn a_vgpu_type_of_another_model_is_refused() {
    let d = expect_error(
        &with_attach("      hpc: {vgpu_types: {\"2g.20gb\": \"H100XM-2-20C\"}}\n"),
        "gpu.vgpu-type-unknown",
        "/global/gpu_allocation/attach/hpc/vgpu_types/2g.20gb",
    );
    let hint = d.hint.unwrap();
    assert!(
        hint.contains("A100DX-2-20C") && hint.contains("A100D-2-20C"),
        "{hint}"
    );
    // The right type, as the driver prints it, is accepted.
    let ok = with_attach("      hpc: {vgpu_types: {\"2g.20gb\": \"GRID A100D-2-20C\"}}\n");
    assert!(findings(&ok).is_empty(), "{:#?}", findings(&ok));
}

#[test]
fn a_vgpu_type_for_a_profile_no_gpu_has_is_refused() {
    expect_error(
        &with_attach("      cloud: {vgpu_types: {\"1g.5gb\": \"A100-1-5C\"}}\n"),
        "gpu.unknown-profile",
        "/global/gpu_allocation/attach/cloud/vgpu_types/1g.5gb",
    );
}

#[test]
fn more_mig_vgpus_for_a_vm_than_nvidia_allows_are_refused() {
    let src = edit(&[(
        "    compute_nodes:\n      count: 2\n",
        "    compute_nodes:\n      count: 1\n      gpus_per_node: 2\n",
    )]);
    let d = expect_error(
        &src,
        "gpu.vgpus-per-vm",
        "/clusters/hpc/compute_nodes/gpus_per_node",
    );
    assert!(d.message.contains("2 MIG slices"), "{}", d.message);
}

#[test]
fn several_whole_gpus_in_one_vm_are_fine() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/whole-gpu.yaml"
    ))
    .unwrap();
    let two = src
        .replace("      hpc: 1\n      cloud: 1\n", "      hpc: 2\n")
        .replace(
            "      gpu_enabled: true\n      ip_range: 192.168.110.11",
            "      gpu_enabled: true\n      gpus_per_node: 2\n      ip_range: 192.168.110.11",
        )
        .replace(
            "gpu_enabled: true, ip_range: 192.168.210.12",
            "ip_range: 192.168.210.12",
        );
    assert_ne!(two, src);
    let all = findings(&two);
    assert!(all.is_empty(), "{all:#?}");
}

#[test]
fn mig_slices_need_a_mig_capable_device() {
    let src = edit(&[("        mig_capable: true\n        allowed_mig_profiles: [\"1g.10gb\", \"2g.20gb\", \"3g.40gb\"]\n", "")]);
    expect_error(
        &src,
        "gpu.no-mig-device",
        "/global/gpu_allocation/mig_slices",
    );
}

#[test]
fn kubernetes_cidrs_must_be_networks() {
    let src = edit(&[(
        "storage_class: local-path",
        "storage_class: local-path\n      service_subnet: 10.96.0.1/12",
    )]);
    expect_error(
        &src,
        "kubernetes.cidr-invalid",
        "/clusters/cloud/kubernetes_config/service_subnet",
    );
}

#[test]
fn yaml_tags_and_documents() {
    let d = findings("version: !custom \"1.0\"\n");
    assert_eq!(d[0].rule, "yaml.tag");
    assert_eq!(d[0].line, Some(1));
    let d = findings("a: 1\n---\nb: 2\n");
    assert_eq!(d[0].rule, "yaml.multiple-documents");
}

#[test]
fn alias_bombs_fail_fast_in_bounded_memory() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/validate/billion-laughs.yaml"
    ))
    .unwrap();
    let d = findings(&src);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].rule, "yaml.too-large");
}
