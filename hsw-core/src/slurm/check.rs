//! Our own checker for the Slurm files, since Slurm has none: a misspelled key is fatal with no line number,
//! `Gres=gpu:a100:x` silently becomes two gres, a missing `GresTypes=gpu` silently drops the GPUs, a node
//! name that does not resolve is dropped. [`check`] runs over the typed model; [`check_text`] over any
//! `slurm.conf` text (it is what proves the rendered text holds only keys hsw knows). Every finding is
//! reported, each as a sentence.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use super::model::{
    CgroupConf, GresConf, Key, SlurmConf, CGROUP_KEYS, GRES_ATTRIBUTES, NODE_ATTRIBUTES,
    PARTITION_ATTRIBUTES, SLURMDBD_KEYS,
};
use crate::config::rules::is_slurm_time;

/// A Slurm name: `^[A-Za-z0-9_.-]+$`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_value(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
}

/// Checks the three files together; returns every finding (empty when they are right).
pub fn check(conf: &SlurmConf, gres: &GresConf, cgroup: &CgroupConf) -> Vec<String> {
    let mut out = Vec::new();
    check_settings(conf, &mut out);
    let gres_types = conf
        .get(Key::GresTypes)
        .map(|v| v.split(',').map(str::to_owned).collect::<HashSet<_>>())
        .unwrap_or_default();

    let mut nodes: HashMap<&str, &super::model::NodeDef> = HashMap::new();
    for n in &conf.nodes {
        if !is_name(&n.name) {
            out.push(format!(
                "node name `{}` is not a Slurm name (letters, digits, `_`, `.`, `-`)",
                n.name
            ));
        }
        if nodes.insert(n.name.as_str(), n).is_some() {
            out.push(format!(
                "node `{}` is defined more than once in slurm.conf",
                n.name
            ));
        }
        if n.addr.parse::<Ipv4Addr>().is_err() {
            out.push(format!(
                "node `{}` has NodeAddr `{}`, which is not an IPv4 address",
                n.name, n.addr
            ));
        }
        if n.cpus == 0 {
            out.push(format!("node `{}` has CPUs=0", n.name));
        }
        if n.real_memory == 0 {
            out.push(format!(
                "node `{}` has RealMemory=0: it leaves no memory to jobs",
                n.name
            ));
        }
        let mut kinds = HashSet::new();
        for g in &n.gres {
            if !gres_types.contains(&g.name) {
                out.push(format!(
                    "node `{}` has gres `{}`, which GresTypes does not list: Slurm would drop it silently",
                    n.name, g.name
                ));
            }
            if !is_name(&g.kind) {
                out.push(format!(
                    "node `{}` has gres type `{}`, which is not a Slurm name",
                    n.name, g.kind
                ));
            }
            if g.count == 0 {
                out.push(format!(
                    "node `{}` has gres `{}` with count 0",
                    n.name,
                    g.spec()
                ));
            }
            if !kinds.insert((&g.name, &g.kind)) {
                out.push(format!(
                    "node `{}` lists gres `{}:{}` twice: merge the counts",
                    n.name, g.name, g.kind
                ));
            }
        }
    }

    let mut partitions = HashSet::new();
    let mut defaults = Vec::new();
    for p in &conf.partitions {
        if !is_name(&p.name) {
            out.push(format!(
                "partition name `{}` is not a Slurm name (letters, digits, `_`, `.`, `-`)",
                p.name
            ));
        }
        if !partitions.insert(p.name.as_str()) {
            out.push(format!("partition `{}` is defined more than once", p.name));
        }
        if p.default {
            defaults.push(p.name.as_str());
        }
        if p.nodes.is_empty() {
            out.push(format!("partition `{}` has no nodes", p.name));
        }
        for n in &p.nodes {
            if !nodes.contains_key(n.as_str()) {
                out.push(format!(
                    "partition `{}` lists node `{n}`, which slurm.conf does not define",
                    p.name
                ));
            }
        }
        if let Some(t) = p.default_time.as_deref().filter(|t| !is_slurm_time(t)) {
            out.push(format!(
                "partition `{}` has DefaultTime `{t}`, which is not a Slurm time",
                p.name
            ));
        }
        if !is_slurm_time(&p.max_time) {
            out.push(format!(
                "partition `{}` has MaxTime `{}`, which is not a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED)",
                p.name, p.max_time
            ));
        }
    }
    if conf.partitions.is_empty() {
        out.push("slurm.conf defines no partition: jobs could not be submitted".into());
    }
    if defaults.len() > 1 {
        out.push(format!(
            "more than one partition is the default ({}): Slurm would silently keep the last",
            defaults.join(", ")
        ));
    }

    check_gres_conf(gres, &nodes, &gres_types, &mut out);
    check_cgroup(cgroup, &mut out);
    out
}

fn check_settings(conf: &SlurmConf, out: &mut Vec<String>) {
    let mut seen = HashSet::new();
    for (k, v) in &conf.settings {
        if !seen.insert(*k) {
            out.push(format!("{} is set more than once", k.as_str()));
        }
        if !is_value(v) {
            out.push(format!(
                "{} has the value `{v}`, which is empty or holds spaces or `#`",
                k.as_str()
            ));
        }
    }
    for k in [
        Key::ClusterName,
        Key::SlurmctldHost,
        Key::AuthType,
        Key::SelectType,
    ] {
        if conf.get(k).is_none() {
            out.push(format!("slurm.conf does not set {}", k.as_str()));
        }
    }
    if let Some(name) = conf.get(Key::ClusterName) {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            out.push(format!(
                "ClusterName `{name}` must be lowercase letters, digits and `_` (at most 40)"
            ));
        }
    }
    if let Some(host) = conf.get(Key::SlurmctldHost) {
        let parsed = host
            .strip_suffix(')')
            .and_then(|h| h.split_once('('))
            .filter(|(name, addr)| is_name(name) && addr.parse::<Ipv4Addr>().is_ok());
        if parsed.is_none() {
            out.push(format!(
                "SlurmctldHost `{host}` is not `name(IPv4 address)`"
            ));
        }
    }
    if let Some(types) = conf.get(Key::GresTypes) {
        for t in types.split(',') {
            if !is_name(t) {
                out.push(format!("GresTypes lists `{t}`, which is not a Slurm name"));
            }
        }
    }
}

fn check_gres_conf(
    gres: &GresConf,
    nodes: &HashMap<&str, &super::model::NodeDef>,
    gres_types: &HashSet<String>,
    out: &mut Vec<String>,
) {
    // (node, name, type) → units in gres.conf
    let mut counted: BTreeMap<(&str, &str, &str), u32> = BTreeMap::new();
    let mut files = HashSet::new();
    for l in &gres.lines {
        if !nodes.contains_key(l.node.as_str()) {
            out.push(format!(
                "gres.conf names node `{}`, which slurm.conf does not define",
                l.node
            ));
        }
        if !gres_types.contains(&l.name) {
            out.push(format!(
                "gres.conf line for `{}` has Name={}, which GresTypes does not list",
                l.node, l.name
            ));
        }
        if !is_name(&l.kind) {
            out.push(format!(
                "gres.conf line for `{}` has Type `{}`, which is not a Slurm name",
                l.node, l.kind
            ));
        }
        match (&l.file, l.count) {
            (Some(f), None) => {
                let ok = f.strip_prefix("/dev/").is_some_and(|rest| {
                    !rest.is_empty()
                        && rest.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/')
                        })
                });
                if !ok {
                    out.push(format!(
                        "gres.conf line for `{}` has File `{f}`, which is not a device under /dev",
                        l.node
                    ));
                }
                if !files.insert((l.node.as_str(), f.as_str())) {
                    out.push(format!("gres.conf gives device {f} of `{}` twice", l.node));
                }
            }
            (None, Some(0)) | (None, None) => out.push(format!(
                "gres.conf line for `{}` has neither a File nor a positive Count",
                l.node
            )),
            (None, Some(_)) => {}
            (Some(_), Some(_)) => out.push(format!(
                "gres.conf line for `{}` has both File and Count: give one",
                l.node
            )),
        }
        *counted
            .entry((l.node.as_str(), l.name.as_str(), l.kind.as_str()))
            .or_default() += l.units();
    }
    for n in nodes.values() {
        for g in &n.gres {
            let have = counted
                .get(&(n.name.as_str(), g.name.as_str(), g.kind.as_str()))
                .copied()
                .unwrap_or(0);
            if have != g.count {
                out.push(format!(
                    "node `{}` has Gres={} in slurm.conf but gres.conf gives {have}: slurmd would drain the node",
                    n.name,
                    g.spec()
                ));
            }
        }
    }
    for (node, name, kind) in counted.keys() {
        let configured = nodes
            .get(node)
            .is_some_and(|n| n.gres.iter().any(|g| g.name == *name && g.kind == *kind));
        if nodes.contains_key(node) && !configured {
            out.push(format!(
                "gres.conf gives `{node}` {name}:{kind}, which its Gres in slurm.conf does not list"
            ));
        }
    }
}

fn check_cgroup(cgroup: &CgroupConf, out: &mut Vec<String>) {
    let mut seen = HashSet::new();
    for (k, v) in &cgroup.settings {
        if !CGROUP_KEYS.contains(k) {
            out.push(format!("cgroup.conf key `{k}` is not one hsw knows"));
        }
        if !seen.insert(*k) {
            out.push(format!("cgroup.conf sets {k} more than once"));
        }
        let ok = if *k == "CgroupPlugin" {
            matches!(v.as_str(), "autodetect" | "cgroup/v1" | "cgroup/v2")
        } else {
            matches!(v.as_str(), "yes" | "no")
        };
        if !ok {
            out.push(format!("cgroup.conf {k} has the value `{v}`"));
        }
    }
}

/// Checks `slurm.conf` text: every line is a comment, blank, `Key=value` with a known key, or a
/// `NodeName=`/`PartitionName=` line with known attributes; no line repeats a setting.
pub fn check_text(text: &str) -> Vec<String> {
    check_lines(text, "slurm.conf", |first, attrs, line_no, out| {
        let known: &[&str] = if first.eq_ignore_ascii_case("NodeName") {
            for (k, v) in attrs {
                if k.eq_ignore_ascii_case("Gres") {
                    check_gres_value(v, line_no, out);
                }
            }
            &NODE_ATTRIBUTES
        } else if first.eq_ignore_ascii_case("PartitionName") {
            &PARTITION_ATTRIBUTES
        } else {
            if Key::parse(first).is_none() {
                out.push(format!(
                    "slurm.conf line {line_no}: `{first}` is not a key hsw writes; Slurm would refuse to start"
                ));
            }
            if attrs.len() > 1 {
                out.push(format!(
                    "slurm.conf line {line_no}: `{first}` takes one value, but the line has more"
                ));
            }
            return;
        };
        for (a, _) in attrs {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(a)) {
                out.push(format!(
                    "slurm.conf line {line_no}: `{a}` is not a {first} attribute hsw writes"
                ));
            }
        }
    })
}

/// A `Gres=` value: comma-separated `name[:type][:count]` with a decimal count (Slurm reads
/// `gpu:a100:x` silently as two gres, `gpu:a100:1` and `gpu:x:1`).
fn check_gres_value(value: &str, line_no: usize, out: &mut Vec<String>) {
    for entry in value.split(',') {
        let parts: Vec<&str> = entry.split(':').collect();
        let ok = match parts.as_slice() {
            [name] => is_name(name),
            [name, last] => {
                is_name(name) && (is_name(last) || last.bytes().all(|b| b.is_ascii_digit()))
            }
            [name, kind, count] => {
                is_name(name)
                    && is_name(kind)
                    && !count.is_empty()
                    && count.bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        };
        if !ok {
            out.push(format!(
                "slurm.conf line {line_no}: Gres entry `{entry}` is not `name:type:count` with a number as count"
            ));
        }
    }
}

/// Checks `slurmdbd.conf` text: every line is a comment, blank, or `Key=value` with a key hsw writes, once.
/// `StoragePass` is refused: the password never belongs in rendered text.
pub fn check_slurmdbd_text(text: &str) -> Vec<String> {
    check_lines(text, "slurmdbd.conf", |first, attrs, line_no, out| {
        if first.eq_ignore_ascii_case("StoragePass") {
            out.push(format!(
                "slurmdbd.conf line {line_no}: StoragePass is in the rendered text; the password is appended on the controller only"
            ));
        } else if !SLURMDBD_KEYS.iter().any(|k| k.eq_ignore_ascii_case(first)) {
            out.push(format!(
                "slurmdbd.conf line {line_no}: `{first}` is not a key hsw writes; slurmdbd would refuse to start"
            ));
        }
        if attrs.len() > 1 {
            out.push(format!(
                "slurmdbd.conf line {line_no}: `{first}` takes one value, but the line has more"
            ));
        }
    })
}

/// Checks `gres.conf` text: every line is a comment, blank, or a `NodeName=` line with known attributes.
pub fn check_gres_text(text: &str) -> Vec<String> {
    check_lines(text, "gres.conf", |first, attrs, line_no, out| {
        if !first.eq_ignore_ascii_case("NodeName") {
            out.push(format!(
                "gres.conf line {line_no}: lines start with NodeName=, not `{first}`"
            ));
        }
        for (a, _) in attrs {
            if !GRES_ATTRIBUTES.iter().any(|k| k.eq_ignore_ascii_case(a)) {
                out.push(format!(
                    "gres.conf line {line_no}: `{a}` is not an attribute hsw writes"
                ));
            }
        }
    })
}

fn check_lines(
    text: &str,
    file: &str,
    mut each: impl FnMut(&str, &[(&str, &str)], usize, &mut Vec<String>),
) -> Vec<String> {
    let mut out = Vec::new();
    let mut settings = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut attrs = Vec::new();
        let mut bad = false;
        for word in trimmed.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => attrs.push((k, v)),
                _ => {
                    out.push(format!(
                        "{file} line {line_no}: `{word}` is not `Key=value`"
                    ));
                    bad = true;
                }
            }
        }
        let Some((first, _)) = attrs.first().copied() else {
            continue;
        };
        if bad {
            continue;
        }
        let single =
            !first.eq_ignore_ascii_case("NodeName") && !first.eq_ignore_ascii_case("PartitionName");
        if single && !settings.insert(first.to_ascii_lowercase()) {
            out.push(format!("{file} line {line_no}: {first} is set again"));
        }
        each(first, &attrs, line_no, &mut out);
    }
    out
}
