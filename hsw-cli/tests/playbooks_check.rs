//! The Kubernetes, MLOps, monitoring and security playbooks as Ansible reads them: `ansible-playbook
//! --syntax-check` on each with the inventory `hsw-cli inventory --planned` builds from the examples; ansible-lint
//! (production profile) on them; the templates that carry logic (the MIG configurations the GPU Operator gets from
//! the GPU plan, the GPU Operator's values, the nftables segmentation, Prometheus' scrape targets, the NVIDIA
//! guest packages read from SHA256SUMS, containerd's nvidia runtime) rendered by Ansible with generated
//! inventories; the download steps carry the tag `online`. Skipped with a printed reason when Ansible is absent,
//! unless `HSW_REQUIRE_ANSIBLE` is set (`HSW_REQUIRE_ANSIBLE_LINT` for ansible-lint).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{ok, repo, require};

use serde_json::Value;

const PLAYBOOKS: [&str; 4] = [
    "ansible/playbook-k8s.yml",
    "ansible/playbook-mlops.yml",
    "ansible/playbook-monitoring.yml",
    "ansible/playbook-security.yml",
];

const CONFIGS: [&str; 5] = [
    "minimal-dev",
    "production-like",
    "cpu-only",
    "h100-all-mig",
    "whole-gpu",
];

/// `hsw-cli inventory --planned` for an example, written into `dir`; returns the file.
fn planned_inventory(config: &str, dir: &Path) -> PathBuf {
    let cfg = format!("examples/{config}.yaml");
    let out = ok(support::hsw()
        .command(&["inventory", "--planned", "--config", &cfg, "--state-dir"])
        .arg(dir.join("state"))
        .output()
        .unwrap());
    let path = dir.join(format!("{config}.yml"));
    std::fs::write(&path, out).unwrap();
    path
}

fn ansible(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.current_dir(repo())
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_DEPRECATION_WARNINGS", "false");
    c
}

#[test]
fn every_playbook_passes_syntax_check_with_the_planned_inventories() {
    if require::tool("ansible-playbook", require::ANSIBLE).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for config in CONFIGS {
        let inv = planned_inventory(config, dir.path());
        // One run checks all four (ansible-playbook takes several playbooks).
        let out = ok(ansible("ansible-playbook")
            .arg("-i")
            .arg(&inv)
            .arg("--syntax-check")
            .args(PLAYBOOKS)
            .output()
            .unwrap());
        for playbook in PLAYBOOKS {
            let name = playbook.trim_start_matches("ansible/");
            assert!(out.contains(name), "{config}, {playbook}: {out}");
        }
    }
}

/// The ansible-lint binary the way `ansible/lint.sh` finds it.
fn ansible_lint() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HSW_ANSIBLE_LINT") {
        return Some(PathBuf::from(p));
    }
    let venv = repo().join("target/ansible-lint/bin/ansible-lint");
    if venv.is_file() {
        return Some(venv);
    }
    Command::new("ansible-lint")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("ansible-lint"))
}

#[test]
fn ansible_lint_production_profile_passes_on_the_playbooks() {
    // lint.sh first (it covers playbook-hpc.yml; it skips by itself when ansible-lint is missing).
    ok(Command::new("bash")
        .arg(repo().join("ansible/lint.sh"))
        .current_dir(repo())
        .output()
        .unwrap());
    let Some(lint) = ansible_lint() else {
        require::skip(
            require::ANSIBLE_LINT,
            "ansible-lint is not installed (ansible/lint.sh --install installs it)",
        );
        return;
    };
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(bin) = lint.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut p = bin.as_os_str().to_owned();
        p.push(":");
        p.push(&path);
        path = p;
    }
    let out = Command::new(&lint)
        .args(["--offline", "--profile", "production", "--nocolor"])
        .args(PLAYBOOKS)
        .env("PATH", path)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ansible-lint failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Renders `expr` (a Jinja expression) for `host` with the inventory `inv` and the variable files `vars`
/// (relative to the repository), through `ansible HOST -m debug`; returns the value.
fn render(inv: &Path, host: &str, vars: &[&str], expr: &str) -> Value {
    let mut c = ansible("ansible");
    c.arg(host).arg("-i").arg(inv);
    for v in vars {
        c.arg("-e").arg(format!("@{v}"));
    }
    c.args([
        "-c",
        "local",
        "-m",
        "ansible.builtin.debug",
        "-a",
        &format!("msg={{{{ {expr} }}}}"),
    ]);
    debug_msg(&mut c)
}

/// Runs an `ansible HOST -m ansible.builtin.debug -a msg=...` command; returns the message.
fn debug_msg(c: &mut Command) -> Value {
    let out = ok(c.output().unwrap());
    let json = out
        .split_once("=>")
        .unwrap_or_else(|| panic!("{out}"))
        .1
        .trim();
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["msg"].clone()
}

const MIG_PLAN: &str =
    "lookup('ansible.builtin.template', 'ansible/roles/k8s_addons/templates/mig-plan.j2') | from_json";

#[test]
fn gpu_workers_get_the_mig_config_of_their_gpu_plan() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inv = planned_inventory("minimal-dev", dir.path());
    let plan = render(&inv, "localhost", &[], MIG_PLAN);
    assert_eq!(
        plan["nodes"]["hsw-dev-gpu-worker-1"], "all-3g.40gb",
        "{plan}"
    );
    assert_eq!(
        plan["configs"]["all-3g.40gb"],
        serde_json::json!([{"devices": "all", "mig-enabled": true, "mig-devices": {"3g.40gb": 1}}])
    );

    // A MIG slice and a whole GPU: the whole GPU's worker has MIG disabled.
    let inv = planned_inventory("production-like", dir.path());
    let plan = render(&inv, "localhost", &[], MIG_PLAN);
    let nodes = &plan["nodes"];
    assert_eq!(nodes["hyperscaler-emulation-gpu-worker-1"], "all-1g.10gb");
    assert_eq!(nodes["hyperscaler-emulation-gpu-worker-3"], "all-disabled");
    assert_eq!(
        plan["configs"]["all-disabled"],
        serde_json::json!([{"devices": "all", "mig-enabled": false}])
    );

    // No GPU workers: nothing to label.
    let inv = planned_inventory("cpu-only", dir.path());
    let plan = render(&inv, "localhost", &[], MIG_PLAN);
    assert_eq!(plan["nodes"], serde_json::json!({}));

    // Mixed profiles, and the same profile with another count: configurations of their own.
    let inv = dir.path().join("mixed.yml");
    std::fs::write(
        &inv,
        r#"all:
  children:
    k8s_gpu_workers:
      hosts:
        w1:
          gpu_units:
            - {kind: mig, device: GPU-0, profile: 1g.10gb}
            - {kind: mig, device: GPU-0, profile: 2g.20gb}
        w2:
          gpu_units:
            - {kind: mig, device: GPU-0, profile: 1g.10gb}
        w3:
          gpu_units:
            - {kind: mig, device: GPU-1, profile: 1g.10gb}
            - {kind: mig, device: GPU-1, profile: 1g.10gb}
        w4:
          gpu_units:
            - {kind: mig, device: GPU-0, profile: 1g.10gb}
            - {kind: mig, device: GPU-1, profile: 1g.10gb}
"#,
    )
    .unwrap();
    let plan = render(&inv, "localhost", &[], MIG_PLAN);
    assert_eq!(
        plan["nodes"],
        serde_json::json!({"w1": "hsw-w1", "w2": "all-1g.10gb", "w3": "hsw-w3", "w4": "all-1g.10gb"}),
        "{plan}"
    );
    assert_eq!(
        plan["configs"]["hsw-w1"],
        serde_json::json!([{"devices": [0], "mig-enabled": true,
                            "mig-devices": {"1g.10gb": 1, "2g.20gb": 1}}])
    );
    assert_eq!(
        plan["configs"]["hsw-w3"],
        serde_json::json!([{"devices": [0], "mig-enabled": true, "mig-devices": {"1g.10gb": 2}}])
    );
}

const SECURITY_VARS: [&str; 4] = [
    "ansible/group_vars/all/hsw.yml",
    "ansible/group_vars/all/security.yml",
    "ansible/group_vars/all/monitoring.yml",
    "ansible/roles/nft_segmentation/defaults/main.yml",
];

const NFT: &str = "lookup('ansible.builtin.template', 'ansible/roles/nft_segmentation/templates/hsw-segmentation.nft.j2')";

#[test]
fn segmentation_drops_the_other_cluster_except_monitoring() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inv = planned_inventory("minimal-dev", dir.path());
    // An HPC VM: the cloud subnet is dropped, the Prometheus host (the control plane) may scrape.
    let rules = render(&inv, "hsw-dev-compute-1", &SECURITY_VARS, NFT);
    let rules = rules.as_str().unwrap();
    assert!(
        rules.contains("ip saddr 192.168.200.0/24 counter drop"),
        "{rules}"
    );
    assert!(
        rules.contains("ip saddr 192.168.200.10 tcp dport { 9100, 9400 } accept"),
        "{rules}"
    );
    assert!(rules.contains("ct state established,related accept"));
    nft_check(rules);
    // The control plane is the Prometheus host: it drops the HPC subnet and needs no monitoring rule.
    let rules = render(&inv, "hsw-dev-control-plane-1", &SECURITY_VARS, NFT);
    let rules = rules.as_str().unwrap();
    assert!(
        rules.contains("ip saddr 192.168.100.0/24 counter drop"),
        "{rules}"
    );
    assert!(!rules.contains("monitoring"), "{rules}");
}

/// `nft -c -f` on the rules (what the role's `validate:` runs) when nft is installed and may check (root).
fn nft_check(rules: &str) {
    let Ok(o) = Command::new("nft").arg("--version").output() else {
        eprintln!("nft is not installed: the rules' syntax is not checked");
        return;
    };
    if !o.status.success() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hsw-segmentation.nft");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new("nft")
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("Operation not permitted") {
        eprintln!("nft -c needs root here: the rules' syntax is not checked");
        return;
    }
    assert!(
        out.status.success(),
        "nft -c rejects the rules:\n{err}\n{rules}"
    );
}

#[test]
fn prometheus_scrapes_every_vm_and_the_gpu_vms_dcgm_exporters() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inv = planned_inventory("production-like", dir.path());
    let text = render(
        &inv,
        "localhost",
        &[
            "ansible/group_vars/all/monitoring.yml",
            "ansible/roles/prometheus/defaults/main.yml",
        ],
        "lookup('ansible.builtin.template', 'ansible/roles/prometheus/templates/prometheus.yml.j2')",
    );
    let text = text.as_str().unwrap();
    // 5 HPC VMs and 5 cloud VMs export node metrics; 4 compute nodes and 3 GPU workers have GPUs.
    assert_eq!(text.matches(":9100\"]").count(), 10, "{text}");
    assert_eq!(text.matches(":9400\"]").count(), 7, "{text}");
    assert!(text.contains("cluster: \"hpc\", role: \"controller\""));
}

#[test]
fn the_download_steps_are_tagged_online() {
    if require::tool("ansible-playbook", require::ANSIBLE).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inv = planned_inventory("production-like", dir.path());
    let list = |playbook: &str, tags: &[&str]| {
        ok(ansible("ansible-playbook")
            .arg("-i")
            .arg(&inv)
            .args(["--list-tasks", playbook])
            .args(tags)
            .output()
            .unwrap())
    };
    for (playbook, online) in [
        (
            "ansible/playbook-k8s.yml",
            &[
                "Download the pkgs.k8s.io signing key",
                "Install the Kubernetes packages",
                "Download the container toolkit's packages SHA256SUMS names",
            ][..],
        ),
        (
            "ansible/playbook-monitoring.yml",
            &[
                "Download Grafana's signing key",
                "Pull the DCGM exporter image from nvcr.io",
            ][..],
        ),
        (
            "ansible/playbook-hpc.yml",
            &["Download the container toolkit's packages SHA256SUMS names"][..],
        ),
    ] {
        let all = list(playbook, &[]);
        let offline = list(playbook, &["--skip-tags", "online"]);
        for task in online {
            assert!(all.contains(task), "{playbook}: {task} missing:\n{all}");
            assert!(
                !offline.contains(task),
                "{playbook}: {task} runs with --skip-tags online"
            );
        }
    }
}

/// Renders a role's template on localhost with extra variables (JSON) and the role's defaults.
fn render_template(role: &str, template: &str, extra: &str) -> String {
    let msg = debug_msg(
        ansible("ansible")
            .args(["localhost", "-c", "local", "-e"])
            .arg(format!("@ansible/roles/{role}/defaults/main.yml"))
            .args(["-e", extra, "-m", "ansible.builtin.debug", "-a"])
            .arg(format!(
                "msg={{{{ lookup('ansible.builtin.template', 'ansible/roles/{role}/templates/{template}') }}}}"
            )),
    );
    msg.as_str().unwrap().to_owned()
}

#[test]
fn mlflow_installs_hash_pinned_requirements_and_takes_its_database_from_the_environment() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let text = render_template(
        "mlops_k8s",
        "mlflow.yaml.j2",
        r#"{"mlops_k8s_mlflow_requirements": "ansible/roles/mlops_k8s/files/mlflow-requirements.txt"}"#,
    );
    let docs: Vec<Value> = text
        .split("\n---\n")
        .map(|d| {
            hsw_core::config::yaml::parse(d)
                .unwrap_or_else(|e| panic!("{e}: {d}"))
                .0
        })
        .collect();
    let reqs = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["requirements.txt"].as_str())
        .unwrap_or_else(|| panic!("no requirements ConfigMap: {text}"));
    assert!(
        reqs.contains("boto3==1.35.36 \\\n    --hash=sha256:"),
        "{reqs}"
    );
    let deploy = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    let args = c["args"][0].as_str().unwrap();
    assert!(
        args.starts_with("pip install --no-cache-dir --no-deps --require-hashes -r /etc/hsw/pip/requirements.txt && exec mlflow server"),
        "{args}"
    );
    assert!(
        !args.contains("backend-store-uri") && !args.contains('$'),
        "{args}"
    );
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "MLFLOW_BACKEND_STORE_URI"
        && e["valueFrom"]["secretKeyRef"]["key"] == "MLFLOW_BACKEND_STORE_URI"));
    let mounts = c["volumeMounts"].to_string();
    assert!(mounts.contains("/etc/hsw/pip"), "{mounts}");

    // With an image that has the clients: nothing is installed.
    let bare = render_template(
        "mlops_k8s",
        "mlflow.yaml.j2",
        r#"{"mlops_k8s_mlflow_requirements": ""}"#,
    );
    assert!(
        !bare.contains("pip install") && !bare.contains("ConfigMap"),
        "{bare}"
    );
}

#[test]
fn the_mlflow_service_keeps_its_secrets_off_the_command_line() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let unit = render_template(
        "mlflow_server",
        "mlflow.service.j2",
        r#"{"mlflow_server_workers": 2}"#,
    );
    let line = |key: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}: {unit}"))
            .to_owned()
    };
    assert_eq!(line("User="), "mlflow");
    assert_eq!(line("EnvironmentFile="), "/etc/mlflow/mlflow.env");
    assert_eq!(line("ReadWritePaths="), "/var/lib/mlflow");
    assert_eq!(line("ProtectSystem="), "strict");
    assert_eq!(
        line("ExecStart="),
        "/opt/mlflow/bin/mlflow server --app-name basic-auth --host 0.0.0.0 --port 5000 --workers 2 \
         --gunicorn-opts \"--timeout 300 --threads 4\" --serve-artifacts --artifacts-destination /var/lib/mlflow/artifacts"
    );
    // With several workers the auth tables are made once, before them; nothing secret on any command line.
    assert!(line("ExecStartPre=")
        .contains("SqlAlchemyStore().init_db(read_auth_config().database_uri)"));
    assert!(
        !unit.contains("postgresql://") && !unit.contains("password"),
        "{unit}"
    );
    // One worker (the default) makes them itself: no second import of MLflow before it.
    let one = render_template("mlflow_server", "mlflow.service.j2", "{}");
    assert!(
        !one.contains("ExecStartPre=") && one.contains("--workers 1 "),
        "{one}"
    );

    // The Kubernetes runtime's pod gets the same Flask key (from its Secret), which basic auth needs.
    let pod = render_template(
        "mlops_k8s",
        "mlflow.yaml.j2",
        r#"{"mlops_k8s_mlflow_requirements": ""}"#,
    );
    assert!(
        pod.contains("- name: MLFLOW_FLASK_SERVER_SECRET_KEY\n              valueFrom:\n                secretKeyRef: {name: mlflow, key: MLFLOW_FLASK_SERVER_SECRET_KEY}"),
        "{pod}"
    );
}

#[test]
fn kubeadm_join_reads_its_token_from_a_join_configuration() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let text = render_template(
        "kubeadm",
        "kubeadm-join.yaml.j2",
        r#"{"kubeadm_join_command": {"stdout": "kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:0f1e \n"}, "ansible_host": "172.20.2.11", "inventory_hostname": "cloud-worker-1"}"#,
    );
    let v = hsw_core::config::yaml::parse(&text).unwrap().0;
    assert_eq!(v["kind"], "JoinConfiguration");
    let t = &v["discovery"]["bootstrapToken"];
    assert_eq!(t["apiServerEndpoint"], "10.0.0.1:6443");
    assert_eq!(t["token"], "abcdef.0123456789abcdef");
    assert_eq!(t["caCertHashes"][0], "sha256:0f1e");
    assert_eq!(v["nodeRegistration"]["name"], "cloud-worker-1");
    assert_eq!(v["apiVersion"], "kubeadm.k8s.io/v1beta4");
    assert_eq!(
        v["nodeRegistration"]["kubeletExtraArgs"][0],
        serde_json::json!({"name": "node-ip", "value": "172.20.2.11"})
    );
    assert_eq!(v["timeouts"]["tlsBootstrap"], "15m");
    assert_eq!(v["timeouts"]["kubeletHealthCheck"], "10m");
}

/// `kubeadm init`'s configuration: v1beta4 with a long control-plane wait and the probe patches (TCG); with hsw's
/// offline bundle in the image, the bundle's version and image repository, and no kube-proxy add-on (it runs as a
/// unit of the nodes).
#[test]
fn kubeadm_init_takes_the_bundle_when_the_image_has_one() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let config = |bundle: &str| -> Vec<Value> {
        let text = render_template(
            "kubeadm",
            "kubeadm-config.yaml.j2",
            &format!(
                r#"{{"kubeadm_bundle": {bundle}, "ansible_host": "192.168.200.10", "inventory_hostname": "cp-1",
                    "k8s_pod_subnet": "10.244.0.0/16", "k8s_service_subnet": "10.96.0.0/12"}}"#
            ),
        );
        text.split("\n---\n")
            .map(|d| {
                hsw_core::config::yaml::parse(d)
                    .unwrap_or_else(|e| panic!("{e}: {d}"))
                    .0
            })
            .collect()
    };
    let with = config(r#"{"kubernetes": "v1.34.4", "image_repository": "registry.hsw.invalid"}"#);
    assert_eq!(with[0]["apiVersion"], "kubeadm.k8s.io/v1beta4");
    assert_eq!(with[0]["kind"], "InitConfiguration");
    assert_eq!(
        with[0]["skipPhases"],
        serde_json::json!(["addon/kube-proxy"])
    );
    assert_eq!(
        with[0]["timeouts"]["controlPlaneComponentHealthCheck"],
        "15m"
    );
    assert_eq!(
        with[0]["patches"]["directory"], "/etc/kubernetes/hsw-patches",
        "the static pods' probe patches"
    );
    assert_eq!(
        with[0]["nodeRegistration"]["kubeletExtraArgs"][0],
        serde_json::json!({"name": "node-ip", "value": "192.168.200.10"})
    );
    assert_eq!(with[1]["kind"], "ClusterConfiguration");
    assert_eq!(with[1]["kubernetesVersion"], "v1.34.4");
    assert_eq!(with[1]["imageRepository"], "registry.hsw.invalid");
    assert_eq!(with[1]["networking"]["podSubnet"], "10.244.0.0/16");
    for component in ["controllerManager", "scheduler"] {
        assert_eq!(
            with[1][component]["extraArgs"],
            serde_json::json!([
                {"name": "leader-elect-lease-duration", "value": "60s"},
                {"name": "leader-elect-renew-deadline", "value": "45s"},
                {"name": "leader-elect-retry-period", "value": "10s"}
            ]),
            "{component}"
        );
    }
    assert_eq!(with[2]["cgroupDriver"], "systemd");
    let without = config("{}");
    assert!(without[0].get("skipPhases").is_none(), "{}", without[0]);
    assert!(
        without[1].get("imageRepository").is_none()
            && without[1].get("kubernetesVersion").is_none()
    );
}

const GPU_OPERATOR_VALUES: &str = "lookup('ansible.builtin.template', \
     'ansible/roles/k8s_addons/templates/gpu-operator-values.yaml.j2') | from_yaml";

/// The GPU Operator's values: the driver and the toolkit are the guest's when role nvidia_guest installs them (a
/// package directory and real GPUs), the operator's otherwise; MIG strategy `mixed` when the plan has MIG units.
#[test]
fn gpu_operator_values_leave_the_driver_and_toolkit_to_the_guest() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let values = |config: &str, extra: &str| {
        let inv = planned_inventory(config, dir.path());
        let vars = dir.path().join("vars.yml");
        std::fs::write(
            &vars,
            format!("k8s_addons_mig_plan: \"{{{{ {MIG_PLAN} }}}}\"\n{extra}\n"),
        )
        .unwrap();
        let vars = vars.to_str().unwrap().to_owned();
        render(
            &inv,
            "localhost",
            &[
                "ansible/group_vars/all/hsw.yml",
                "ansible/group_vars/all/gpu.yml",
                "ansible/roles/k8s_addons/defaults/main.yml",
                &vars,
            ],
            GPU_OPERATOR_VALUES,
        )
    };
    let guest = values(
        "minimal-dev",
        "nvidia_guest_packages_dir: /srv/nvidia\nhsw_gpus_simulated: false",
    );
    assert_eq!(guest["driver"]["enabled"], false, "{guest}");
    assert_eq!(guest["toolkit"]["enabled"], false, "{guest}");
    assert_eq!(guest["mig"]["strategy"], "mixed", "{guest}");
    assert_eq!(
        guest["migManager"]["config"]["name"],
        "hsw-mig-parted-config"
    );
    assert_eq!(guest["dcgmExporter"]["enabled"], false);

    // Without packages, or with simulated units, the role installs nothing: the operator brings both.
    for extra in [
        "hsw_gpus_simulated: false",
        "nvidia_guest_packages_dir: /srv/nvidia\nhsw_gpus_simulated: true",
    ] {
        let v = values("minimal-dev", extra);
        assert_eq!(v["driver"]["enabled"], true, "{extra}: {v}");
        assert_eq!(v["toolkit"]["enabled"], true, "{extra}: {v}");
    }
    // Whole GPUs only: no MIG units, strategy single.
    let whole = values("whole-gpu", "nvidia_guest_packages_dir: /srv/nvidia");
    assert_eq!(whole["mig"]["strategy"], "single", "{whole}");
}

/// The role reads the package directory's SHA256SUMS into one driver and the toolkit's .debs in install order,
/// and reports what it cannot use (a path instead of a file name, a short digest, a missing toolkit package).
#[test]
fn nvidia_guest_reads_sha256sums_into_what_it_installs() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let d = |c: char| c.to_string().repeat(64);
    let sums = format!(
        "{}  NVIDIA-Linux-x86_64-550.90.07-grid.run\n\
         {} *nvidia-container-toolkit_1.17.3-1_amd64.deb\n\
         {}  nvidia-container-toolkit-base_1.17.3-1_amd64.deb\n\
         {}  libnvidia-container-tools_1.17.3-1_amd64.deb\n\
         {}  libnvidia-container1_1.17.3-1_amd64.deb\n\
         \n# made with sha256sum\n",
        d('A'),
        d('b'),
        d('c'),
        d('d'),
        d('e')
    );
    let read = |text: &str| -> Value {
        let extra = serde_json::json!({ "nvidia_guest_sums_text": text }).to_string();
        debug_msg(
            ansible("ansible")
                .args(["localhost", "-c", "local"])
                .args([
                    "-e",
                    "@ansible/roles/nvidia_guest/defaults/main.yml",
                    "-e",
                    &extra,
                ])
                .args(["-m", "ansible.builtin.debug", "-a"])
                .arg(
                    "msg={{ lookup('ansible.builtin.template', \
                     'ansible/roles/nvidia_guest/templates/packages.j2') | from_json }}",
                ),
        )
    };
    let p = read(&sums);
    assert_eq!(
        p["drivers"],
        serde_json::json!([{"name": "NVIDIA-Linux-x86_64-550.90.07-grid.run", "kind": "run",
                            "version": "550.90.07"}]),
        "{p}"
    );
    // Lower-cased digests, the `*` of binary mode dropped.
    assert_eq!(p["files"][0]["sha256"], d('a'));
    assert_eq!(
        p["files"][1]["name"],
        "nvidia-container-toolkit_1.17.3-1_amd64.deb"
    );
    assert_eq!(
        p["toolkit"],
        serde_json::json!([
            "libnvidia-container1_1.17.3-1_amd64.deb",
            "libnvidia-container-tools_1.17.3-1_amd64.deb",
            "nvidia-container-toolkit-base_1.17.3-1_amd64.deb",
            "nvidia-container-toolkit_1.17.3-1_amd64.deb"
        ])
    );
    assert_eq!(p["invalid"], serde_json::json!([]));
    assert_eq!(p["toolkit_missing"], serde_json::json!([]));

    // The Ubuntu/Debian .deb of the driver; a path, a short digest and a missing toolkit package.
    let bad = format!(
        "{}  nvidia-linux-grid-550_550.90.07_amd64.deb\n{}  ../../etc/shadow\nabc  x.deb\n",
        d('1'),
        d('2')
    );
    let p = read(&bad);
    assert_eq!(p["drivers"][0]["kind"], "deb", "{p}");
    assert_eq!(p["drivers"][0]["version"], "550.90.07");
    assert_eq!(
        p["invalid"],
        serde_json::json!([format!("{}  ../../etc/shadow", d('2')), "abc  x.deb"])
    );
    assert_eq!(p["toolkit_missing"].as_array().unwrap().len(), 4);
    assert_eq!(p["files"].as_array().unwrap().len(), 1);
}

/// A piece of `containerd config default` (containerd 1.6) as the containerd role reads it.
const CONTAINERD_DEFAULT: &str = r#"version = 2

[plugins]

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      snapshotter = "overlayfs"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"

          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            BinaryName = ""
            SystemdCgroup = false"#;

/// containerd's config.toml as the containerd role writes it, for `host` of a GPU worker / CPU worker inventory.
fn containerd_config(host: &str, extra: &Value) -> String {
    let tasks =
        std::fs::read_to_string(repo().join("ansible/roles/containerd/tasks/main.yml")).unwrap();
    let tasks = hsw_core::config::yaml::parse(&tasks).unwrap().0;
    let content = tasks
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| t["ansible.builtin.copy"]["content"].as_str())
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.yml");
    std::fs::write(
        &inv,
        "all:\n  children:\n    k8s_gpu_workers:\n      hosts:\n        gpu-1:\n    k8s_cpu_workers:\n      hosts:\n        cpu-1:\n",
    )
    .unwrap();
    let mut vars = serde_json::json!({"containerd_default_config": {"stdout": CONTAINERD_DEFAULT}});
    for (k, v) in extra.as_object().unwrap() {
        vars[k] = v.clone();
    }
    let msg = debug_msg(
        ansible("ansible")
            .arg(host)
            .arg("-i")
            .arg(&inv)
            .args(["-c", "local"])
            .args(["-e", "@ansible/group_vars/all/hsw.yml"])
            .args(["-e", "@ansible/group_vars/all/gpu.yml"])
            .args(["-e", "@ansible/roles/containerd/defaults/main.yml"])
            .arg("-e")
            .arg(vars.to_string())
            .args(["-m", "ansible.builtin.debug", "-a"])
            .arg(serde_json::json!({ "msg": content }).to_string()),
    );
    msg.as_str().unwrap().to_owned()
}

/// On a GPU worker whose toolkit role nvidia_guest installs, containerd gets the `nvidia` runtime as its default;
/// everywhere else config.toml is what it was (the defaults with SystemdCgroup and the pause image).
#[test]
fn containerd_gets_the_nvidia_runtime_on_gpu_workers_with_the_toolkit() {
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let plain = format!(
        "{}\n",
        CONTAINERD_DEFAULT
            .replace("SystemdCgroup = false", "SystemdCgroup = true")
            .replace("pause:3.6", "pause:3.9")
    );
    let with = serde_json::json!({"nvidia_guest_packages_dir": "/srv/nvidia"});
    let gpu = containerd_config("gpu-1", &with);
    assert!(
        gpu.starts_with(&plain.replace(
            "default_runtime_name = \"runc\"",
            "default_runtime_name = \"nvidia\""
        )),
        "{gpu}"
    );
    assert!(
        gpu.contains(
            "\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia.options]\n  \
         BinaryName = \"/usr/bin/nvidia-container-runtime\"\n  SystemdCgroup = true\n"
        ),
        "{gpu}"
    );
    assert_eq!(containerd_config("cpu-1", &with), plain);
    let simulated =
        serde_json::json!({"nvidia_guest_packages_dir": "/srv/nvidia", "hsw_gpus_simulated": true});
    assert_eq!(containerd_config("gpu-1", &simulated), plain);
    assert_eq!(containerd_config("gpu-1", &serde_json::json!({})), plain);
}

/// Whether this machine has an NVIDIA PCI function (vendor 0x10de).
fn has_nvidia_device() -> bool {
    std::fs::read_dir("/sys/bus/pci/devices").is_ok_and(|d| {
        d.flatten().any(|e| {
            std::fs::read_to_string(e.path().join("vendor")).is_ok_and(|v| v.trim() == "0x10de")
        })
    })
}

/// Role nvidia_guest run on this machine (`-c local`; nothing is installed): without a package directory, or
/// with simulated units, it only says why it does nothing, changing nothing; with both on a machine without an
/// NVIDIA device it fails, naming the VM's units, before it reads the package directory.
#[test]
fn nvidia_guest_skips_without_packages_or_real_gpus_and_fails_without_a_device() {
    if require::tool("ansible-playbook", require::ANSIBLE).is_none() {
        return;
    }
    if has_nvidia_device() {
        eprintln!("this machine has an NVIDIA device: the no-device failure is not checked here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("guest.yml");
    std::fs::write(
        &playbook,
        "- name: Role nvidia_guest on this machine\n  hosts: gpu-1\n  gather_facts: false\n  roles:\n    - role: nvidia_guest\n",
    )
    .unwrap();
    let inv = dir.path().join("inv.yml");
    std::fs::write(
        &inv,
        "all:\n  hosts:\n    gpu-1:\n      ansible_connection: local\n      gpu_units: [{kind: mig, device: GPU-0, profile: 1g.10gb}]\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = ansible("ansible-playbook")
            .env("ANSIBLE_ROLES_PATH", repo().join("ansible/roles"))
            .arg("-i")
            .arg(&inv)
            .args(["-e", "@ansible/group_vars/all/hsw.yml"])
            .args(["-e", "@ansible/group_vars/all/gpu.yml"])
            .args(extra)
            .arg(&playbook)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), text)
    };
    let (okay, out) = run(&[]);
    assert!(okay, "{out}");
    assert!(
        out.contains("nvidia_guest_packages_dir is not set"),
        "{out}"
    );
    assert!(out.contains("changed=0"), "{out}");

    let missing = dir.path().join("no-such-dir");
    let with_dir = format!("nvidia_guest_packages_dir={}", missing.display());
    let (okay, out) = run(&["-e", &with_dir, "-e", "hsw_gpus_simulated=true"]);
    assert!(okay, "{out}");
    assert!(out.contains("are simulated"), "{out}");
    assert!(out.contains("changed=0"), "{out}");

    let (okay, out) = run(&["-e", &with_dir, "-e", "hsw_gpus_simulated=false"]);
    assert!(!okay, "{out}");
    assert!(
        out.contains("has GPU units in the plan (1g.10gb) but no NVIDIA PCI function"),
        "{out}"
    );
    assert!(!out.contains("SHA256SUMS is missing"), "{out}");
}

// ---------------------------------------------------------------- HPC: accounts, storage, users

/// Runs the slurm_accounts role's script against the fake sacctmgr (tests/fixtures/sacctmgr: Slurm's accounting
/// state in a JSON file, its rules for missing parents/accounts/QoS); returns (success, stdout, stderr).
fn converge_accounts(dir: &Path, want: &Value) -> (bool, String, String) {
    let file = dir.join("want.json");
    std::fs::write(&file, serde_json::to_string(want).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(repo().join("ansible/roles/slurm_accounts/files/hsw-slurm-accounts"))
        .arg(&file)
        .env(
            "HSW_SACCTMGR",
            repo().join("tests/fixtures/sacctmgr/fake-sacctmgr"),
        )
        .env("FAKE_SACCTMGR_STATE", dir.join("state.json"))
        .env("FAKE_SACCTMGR_LOG", dir.join("log"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The variables `hsw-cli ansible hpc` writes for an example (a dry run into `dir`).
fn hpc_vars(config: &str, dir: &Path) -> Value {
    let state = dir.join("state");
    let out = support::hsw()
        .command(&[
            "ansible",
            "hpc",
            "--planned",
            "--config",
            &format!("examples/{config}.yaml"),
            "--dry-run",
            "--state-dir",
        ])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(state.join("ansible/hpc-vars.json")).unwrap())
        .unwrap()
}

#[test]
fn slurm_accounts_converge_and_a_second_run_changes_nothing() {
    if require::on_path("python3").is_none() {
        require::skip(require::ANSIBLE, "python3 is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut want = hpc_vars("minimal-dev", dir.path())["hsw_slurm_accounts"].clone();
    // One more account with a sub-account and its user, to be removed below.
    want["accounts"].as_array_mut().unwrap().push(
        serde_json::json!({"name": "physics", "parent": "research", "fairshare": 5, "qos": []}),
    );
    want["users"].as_array_mut().unwrap().push(
        serde_json::json!({"name": "bob", "account": "physics", "qos": [], "default_qos": ""}),
    );

    let (ok1, out, err) = converge_accounts(dir.path(), &want);
    assert!(ok1, "{err}");
    assert_eq!(out.lines().last(), Some("changed"), "{out}");
    for line in [
        "add cluster hsw_dev",
        "add qos short",
        "modify qos where name=short set MaxWall=01:00:00 MaxTRESPerUser=gres/gpu=1 Flags=DenyOnLimit",
        "add account research cluster=hsw_dev parent=root fairshare=100 qos=short defaultqos=short",
        "add account physics cluster=hsw_dev parent=research fairshare=5 qos=normal defaultqos=normal",
        "add user alice account=research cluster=hsw_dev qos=short defaultqos=short",
        "add user hsw account=root cluster=hsw_dev qos=normal defaultqos=normal",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
    }
    // The parent is added before its child (the fake refuses a missing parent, as sacctmgr does).
    let pos = |s: &str| out.find(s).unwrap();
    assert!(pos("add account research") < pos("add account physics"));

    let (ok2, out, err) = converge_accounts(dir.path(), &want);
    assert!(ok2, "{err}");
    assert_eq!(out, "unchanged\n", "a second run changes nothing");

    // Removing the user and the account from the file removes them from Slurm (user first); a changed limit is
    // modified in place.
    want["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u["name"] != "bob");
    want["accounts"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["name"] != "physics");
    want["qos"][0]["max_wall"] = Value::from("2:00:00");
    let (ok3, out, err) = converge_accounts(dir.path(), &want);
    assert!(ok3, "{err}");
    assert_eq!(
        out,
        "modify qos where name=short set MaxWall=2:00:00\n\
         delete user where name=bob cluster=hsw_dev\n\
         delete account where name=physics cluster=hsw_dev\n\
         changed\n"
    );
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(!state.contains("\"bob\""), "{state}");
    // Slurm's root user and the login user are never removed.
    assert!(state.contains("\"user\": \"root\"") && state.contains("\"user\": \"hsw\""));
    let (ok4, out, _) = converge_accounts(dir.path(), &want);
    assert!(ok4 && out == "unchanged\n", "{out}");

    // A user moved to another account: the new association becomes the default, then the old one goes.
    want["accounts"].as_array_mut().unwrap().push(
        serde_json::json!({"name": "physics", "parent": "root", "fairshare": 1, "qos": ["short"]}),
    );
    want["users"][0]["account"] = Value::from("physics");
    let (ok6, out, err) = converge_accounts(dir.path(), &want);
    assert!(ok6, "{err}");
    assert_eq!(
        out,
        "add account physics cluster=hsw_dev parent=root fairshare=1 qos=short defaultqos=short\n\
         add user alice account=physics cluster=hsw_dev qos=short defaultqos=short\n\
         modify user where name=alice set defaultaccount=physics\n\
         delete user where name=alice account=research cluster=hsw_dev\n\
         changed\n"
    );
    let (ok7, out, _) = converge_accounts(dir.path(), &want);
    assert!(ok7 && out == "unchanged\n", "{out}");

    // A failing sacctmgr fails the task with its message.
    want["users"].as_array_mut().unwrap().push(
        serde_json::json!({"name": "eve", "account": "nowhere", "qos": [], "default_qos": ""}),
    );
    let (ok5, _, err) = converge_accounts(dir.path(), &want);
    assert!(!ok5);
    assert!(err.contains("Account nowhere doesn't exist"), "{err}");
}

#[test]
fn hpc_site_variables_follow_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let v = hpc_vars("minimal-dev", dir.path());
    assert_eq!(v["hsw_shared_storage"], Value::Bool(true));
    assert_eq!(v["hsw_hpc_subnet"], "192.168.100.0/24");
    assert_eq!(
        v["hsw_hpc_users"],
        serde_json::json!([{"name": "alice", "uid": 2001, "account": "research"}])
    );
    // The exports and the mounts the roles write, rendered by Ansible from these variables.
    if require::tool("ansible", require::ANSIBLE).is_none() {
        return;
    }
    let vars = dir.path().join("vars.json");
    std::fs::write(&vars, serde_json::to_string(&v).unwrap()).unwrap();
    let inv = planned_inventory("minimal-dev", dir.path());
    let vars_arg = vars.to_str().unwrap();
    let exports = render(
        &inv,
        "hsw-dev-controller-1",
        &[vars_arg],
        "lookup('ansible.builtin.template', 'ansible/roles/nfs_server/templates/hsw.exports.j2')",
    );
    let lines: Vec<&str> = exports
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        lines,
        [
            "/home 192.168.100.0/24(rw,sync,root_squash,no_subtree_check)",
            "/scratch 192.168.100.0/24(rw,sync,root_squash,no_subtree_check)",
        ]
    );
    let homes = render(
        &inv,
        "hsw-dev-compute-1",
        &[vars_arg, "ansible/roles/hpc_users/vars/main.yml"],
        "hpc_users_make_homes",
    );
    assert_eq!(
        homes,
        Value::Bool(false),
        "homes are made on the controller"
    );
    let homes = render(
        &inv,
        "hsw-dev-controller-1",
        &[vars_arg, "ansible/roles/hpc_users/vars/main.yml"],
        "hpc_users_make_homes",
    );
    assert_eq!(homes, Value::Bool(true));
}
