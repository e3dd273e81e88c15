//! The Ansible inventory of both clusters, and its four renderings: YAML and INI files, the YAML structure
//! as JSON, and the dynamic-inventory JSON of `--list` / `--host`.
//!
//! # Groups
//!
//! | group | hosts / children |
//! |---|---|
//! | `hpc` | children `slurm_controller`, `slurm_compute` |
//! | `cloud` | children `k8s_control_plane`, `k8s_cpu_workers`, `k8s_gpu_workers` |
//! | `k8s_cluster` | children `kube_control_plane`, `kube_node` (Kubespray's groups) |
//! | `kube_control_plane`, `etcd` | the control plane |
//! | `kube_node` | the CPU and GPU workers |
//!
//! Every group is always present (empty when its cluster or group is absent), so playbooks can name them.
//!
//! # Host variables
//!
//! `ansible_host`, `ansible_user` (`global.ssh.user`, default `hsw`), `ansible_ssh_private_key_file` and
//! `ansible_ssh_common_args` (host keys accepted on first contact into the cluster's own known_hosts file),
//! `ansible_python_interpreter`, `hsw_cluster`, `hsw_role`, `gpu_units` (a list of `{kind, device, profile,
//! mdev_uuid, pci_address}`, the absent keys left out), and on compute nodes and workers `node_labels`
//! (`{compute: cpu|gpu}`, the name Kubespray reads); on Slurm compute nodes `slurm_gres` (the node's
//! `Gres=` value, empty without GPUs). All variables are host variables, so every rendering gives Ansible
//! the same `hostvars`.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::hosts::{Deployment, Host, Role};
use super::state::StateLayout;
use crate::config::model::ClusterConfig;
use crate::slurm;

/// The default login user.
pub const DEFAULT_USER: &str = "hsw";
/// The interpreter Ansible uses in the VMs.
pub const PYTHON: &str = "/usr/bin/python3";

/// One group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The name: a valid identifier.
    pub name: &'static str,
    /// Its own hosts.
    pub hosts: Vec<String>,
    /// Its child groups.
    pub children: Vec<&'static str>,
}

/// The inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// Groups, parents before their children.
    pub groups: Vec<Group>,
    /// Every host with its variables, in host order.
    pub hostvars: Vec<(String, Map<String, Value>)>,
}

/// A quoted word for `ssh` arguments (Ansible splits `ansible_ssh_common_args` like a shell).
fn sh_word(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%=,".contains(&b));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Inventory {
    /// Builds the inventory. `state` should be absolute: Ansible may run from another directory.
    pub fn build(
        config: &ClusterConfig,
        deployment: &Deployment,
        state: &StateLayout,
    ) -> Inventory {
        let user = config
            .global
            .ssh
            .as_ref()
            .and_then(|s| s.user.clone())
            .unwrap_or_else(|| DEFAULT_USER.to_owned());
        let names = |f: &dyn Fn(Role) -> bool| -> Vec<String> {
            deployment
                .hosts
                .iter()
                .filter(|h| f(h.role))
                .map(|h| h.name.clone())
                .collect()
        };
        let group = |name, hosts, children| Group {
            name,
            hosts,
            children,
        };
        let groups = vec![
            group("hpc", vec![], vec!["slurm_controller", "slurm_compute"]),
            group(
                "slurm_controller",
                names(&|r| r == Role::Controller),
                vec![],
            ),
            group("slurm_compute", names(&|r| r == Role::Compute), vec![]),
            group(
                "cloud",
                vec![],
                vec!["k8s_control_plane", "k8s_cpu_workers", "k8s_gpu_workers"],
            ),
            group(
                "k8s_control_plane",
                names(&|r| r == Role::ControlPlane),
                vec![],
            ),
            group("k8s_cpu_workers", names(&|r| r == Role::CpuWorker), vec![]),
            group("k8s_gpu_workers", names(&|r| r == Role::GpuWorker), vec![]),
            group(
                "k8s_cluster",
                vec![],
                vec!["kube_control_plane", "kube_node"],
            ),
            group(
                "kube_control_plane",
                names(&|r| r == Role::ControlPlane),
                vec![],
            ),
            group(
                "kube_node",
                names(&|r| matches!(r, Role::CpuWorker | Role::GpuWorker)),
                vec![],
            ),
            group("etcd", names(&|r| r == Role::ControlPlane), vec![]),
        ];
        let hostvars = deployment
            .hosts
            .iter()
            .map(|h| (h.name.clone(), host_vars(config, h, &user, state)))
            .collect();
        Inventory { groups, hostvars }
    }

    /// A host's variables; `None` for an unknown host.
    pub fn host(&self, name: &str) -> Option<&Map<String, Value>> {
        self.hostvars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// `--host NAME`: the host's variables, `{}` for an unknown host.
    pub fn host_json(&self, name: &str) -> Value {
        Value::Object(self.host(name).cloned().unwrap_or_default())
    }

    /// `--list`: Ansible's dynamic-inventory JSON, with `_meta.hostvars` (so Ansible never calls `--host`).
    pub fn to_list_json(&self) -> Value {
        let mut root = Map::new();
        for g in &self.groups {
            let mut v = Map::new();
            if !g.children.is_empty() {
                v.insert("children".into(), json!(g.children));
            } else {
                v.insert("hosts".into(), json!(g.hosts));
            }
            root.insert(g.name.into(), Value::Object(v));
        }
        let hostvars: Map<String, Value> = self
            .hostvars
            .iter()
            .map(|(n, v)| (n.clone(), Value::Object(v.clone())))
            .collect();
        root.insert("_meta".into(), json!({ "hostvars": hostvars }));
        Value::Object(root)
    }

    fn roots(&self) -> Vec<&Group> {
        self.groups
            .iter()
            .filter(|g| !self.groups.iter().any(|p| p.children.contains(&g.name)))
            .collect()
    }

    fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The YAML inventory's structure (`all: {children: ...}`) as a JSON value: nested groups, each host's
    /// variables where it first appears. Ansible's YAML plugin reads it from a `.json` file too.
    pub fn to_static_json(&self) -> Value {
        let mut placed = std::collections::HashSet::new();
        let mut children = Map::new();
        for g in self.roots() {
            children.insert(g.name.into(), self.group_value(g, &mut placed));
        }
        json!({ "all": { "children": children } })
    }

    fn group_value(&self, g: &Group, placed: &mut std::collections::HashSet<String>) -> Value {
        let mut v = Map::new();
        if !g.hosts.is_empty() {
            let mut hosts = Map::new();
            for h in &g.hosts {
                let vars = if placed.insert(h.clone()) {
                    self.host(h)
                        .map(|m| Value::Object(m.clone()))
                        .unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                hosts.insert(h.clone(), vars);
            }
            v.insert("hosts".into(), Value::Object(hosts));
        }
        if !g.children.is_empty() {
            let mut children = Map::new();
            for c in &g.children {
                if let Some(child) = self.group(c) {
                    children.insert((*c).into(), self.group_value(child, placed));
                }
            }
            v.insert("children".into(), Value::Object(children));
        }
        Value::Object(v)
    }

    /// The YAML inventory (for `ansible -i inventory.yml`).
    pub fn to_yaml(&self, header: &[String]) -> String {
        let mut out = String::new();
        for l in header {
            let _ = writeln!(out, "# {l}");
        }
        yaml_block(&mut out, 0, &self.to_static_json());
        out
    }

    /// The INI inventory (for `ansible -i hosts.ini`): one section per group with hosts, a `:children`
    /// section per parent; a host's variables on its first line, written so that Ansible's INI parser
    /// reads back exactly the values of the other renderings.
    pub fn to_ini(&self, header: &[String]) -> String {
        let mut out = String::new();
        for l in header {
            let _ = writeln!(out, "# {l}");
        }
        let mut placed = std::collections::HashSet::new();
        for g in &self.groups {
            if !g.children.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n[{}]", g.name);
            for h in &g.hosts {
                out.push_str(h);
                if placed.insert(h.clone()) {
                    if let Some(vars) = self.host(h) {
                        for (k, v) in vars {
                            let _ = write!(out, " {k}={}", ini_value(v));
                        }
                    }
                }
                out.push('\n');
            }
        }
        for g in &self.groups {
            if g.children.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n[{}:children]", g.name);
            for c in &g.children {
                let _ = writeln!(out, "{c}");
            }
        }
        out
    }
}

fn host_vars(
    config: &ClusterConfig,
    h: &Host,
    user: &str,
    state: &StateLayout,
) -> Map<String, Value> {
    let cluster = h.cluster();
    let mut v = Map::new();
    v.insert("ansible_host".into(), json!(h.ip.to_string()));
    v.insert("ansible_user".into(), json!(user));
    v.insert(
        "ansible_ssh_private_key_file".into(),
        json!(state.ssh_private_key(cluster).display().to_string()),
    );
    v.insert(
        "ansible_ssh_common_args".into(),
        json!(format!(
            "-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={}",
            sh_word(&state.known_hosts(cluster).display().to_string())
        )),
    );
    v.insert("ansible_python_interpreter".into(), json!(PYTHON));
    v.insert("hsw_cluster".into(), json!(cluster));
    v.insert("hsw_role".into(), json!(h.role.as_str()));
    v.insert(
        "gpu_units".into(),
        serde_json::to_value(&h.gpu_units).unwrap_or_else(|_| json!([])),
    );
    if matches!(h.role, Role::Compute | Role::CpuWorker | Role::GpuWorker) {
        let kind = if h.gpu_units.is_empty() { "cpu" } else { "gpu" };
        v.insert("node_labels".into(), json!({ "compute": kind }));
    }
    if h.role == Role::Compute {
        v.insert(
            "slurm_gres".into(),
            json!(slurm::model::gres_spec(&slurm::node_gres(config, h))),
        );
    }
    v
}

// ---------------------------------------------------------------------------------------
// YAML (block style; every string double-quoted, so nothing is left to YAML's type guessing)
// ---------------------------------------------------------------------------------------

fn yaml_key(k: &str) -> String {
    let plain = k
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        k.to_owned()
    } else {
        yaml_scalar(&Value::String(k.to_owned()))
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn yaml_block(out: &mut String, indent: usize, v: &Value) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                let key = yaml_key(k);
                if is_block(val) {
                    let _ = writeln!(out, "{pad}{key}:");
                    yaml_block(out, indent + 2, val);
                } else {
                    let s = yaml_scalar(val);
                    if s.is_empty() {
                        let _ = writeln!(out, "{pad}{key}:");
                    } else {
                        let _ = writeln!(out, "{pad}{key}: {s}");
                    }
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                if is_block(item) {
                    // `- ` then the item's first line on the same line.
                    let mut inner = String::new();
                    yaml_block(&mut inner, indent + 2, item);
                    let inner = inner.get(indent + 2..).unwrap_or_default();
                    let _ = write!(out, "{pad}- {inner}");
                } else {
                    let _ = writeln!(out, "{pad}- {}", yaml_scalar(item));
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", yaml_scalar(other));
        }
    }
}

// ---------------------------------------------------------------------------------------
// INI values. Ansible splits a host line like a shell (POSIX shlex) and then, unless the value holds
// `#`, evaluates each value as a Python literal, keeping the text when that fails. So a string is written
// bare only when it is certainly not a Python literal; otherwise as a Python string literal inside shell
// quotes, and lists and maps as Python literals inside shell quotes.
// ---------------------------------------------------------------------------------------

fn ini_value(v: &Value) -> String {
    match v {
        Value::String(s) => ini_string(s),
        Value::Bool(_) | Value::Number(_) | Value::Null => python_literal(v),
        Value::Array(_) | Value::Object(_) => shell_double_quote(&python_literal(v)),
    }
}

fn ini_string(s: &str) -> String {
    let charset = |extra: &[u8]| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    let first = s.bytes().next();
    // Text starting with a letter, `_` or `/` is never a Python literal (except True/False/None); dotted
    // quads and times (`1.2.3.4`, `24:00:00`) are not either.
    let plain_word = first.is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'/')
        && charset(b"_./:@%+,=-")
        && !matches!(s, "True" | "False" | "None");
    let plain_number_like = first.is_some_and(|b| b.is_ascii_digit())
        && charset(b".:")
        && (s.matches('.').count() >= 2 || s.contains(':'));
    if plain_word || plain_number_like {
        s.to_owned()
    } else if s.contains('#') {
        // No literal evaluation happens for values with `#`: the shell-quoted text is the value.
        format!("'{}'", s.replace('\'', r#"'"'"'"#))
    } else {
        shell_double_quote(&python_str(s))
    }
}

fn shell_double_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\""))
}

fn python_str(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn python_literal(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => python_str(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", python_str(k), python_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_strings() {
        assert_eq!(ini_string("192.168.1.10"), "192.168.1.10");
        assert_eq!(ini_string("/usr/bin/python3"), "/usr/bin/python3");
        assert_eq!(ini_string("True"), "\"'True'\"");
        assert_eq!(ini_string("12"), "\"'12'\"");
        assert_eq!(ini_string(""), "\"''\"");
        assert_eq!(ini_string("a b"), "\"'a b'\"");
        assert_eq!(ini_string("a#b"), "'a#b'");
    }

    #[test]
    fn yaml_lists_of_maps() {
        let mut s = String::new();
        yaml_block(
            &mut s,
            0,
            &json!({"u": [{"kind": "mig", "device": "GPU-0"}], "e": [], "x": null, "no": 1}),
        );
        assert_eq!(
            s,
            "u:\n  - kind: \"mig\"\n    device: \"GPU-0\"\ne: []\nx:\n\"no\": 1\n"
        );
    }
}
