//! Semantic rules over the HPC cluster's Slurm and site settings (`clusters.hpc`): partitions and the nodes
//! they hold, shared storage paths, accounts, users and QoS. Part of [`crate::config::rules::check`]; each
//! rule id has a test in `tests/validate_rules.rs`.

use std::collections::{HashMap, HashSet};

use crate::config::hpc::{
    partition_holds, set_holds, HpcUser, PartitionSpec, MAX_USER_UID, MIN_USER_UID, NODE_SETS,
};
use crate::config::model::ClusterConfig;
use crate::config::rules::is_slurm_time;
use crate::config::schema::suggest;
use crate::diag::Diagnostic;

const SLURM: &str = "/clusters/hpc/slurm_config";
const TIME_HINT: &str =
    "use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED (e.g. 24:00:00 or 2-00:00:00)";
/// Names the HPC VMs already use: a user of that name would take over a system account.
const RESERVED_USERS: [&str; 8] = [
    "root", "slurm", "munge", "mysql", "nobody", "daemon", "statd", "_rpc",
];

/// Every rule over `clusters.hpc`'s Slurm and site settings.
pub fn check(config: &ClusterConfig, out: &mut Vec<Diagnostic>) {
    let Some(hpc) = &config.clusters.hpc else {
        return;
    };
    check_partitions(config, out);
    check_storage(&hpc.shared_storage(), out);
    let qos: HashSet<&str> = unique(
        hpc.qos.iter().map(|q| q.name.as_str()),
        "/clusters/hpc/qos",
        "hpc.qos-duplicate",
        "QoS",
        out,
    );
    let gpus = hpc.compute_nodes.gpu_units_per_node() > 0;
    for (i, q) in hpc.qos.iter().enumerate() {
        if let Some(t) = &q.max_wall {
            time(t, &format!("/clusters/hpc/qos/{i}/max_wall"), out);
        }
        if q.max_gpus_per_user.is_some() && !gpus {
            out.push(
                Diagnostic::error(
                    "hpc.qos-gpus",
                    format!("/clusters/hpc/qos/{i}/max_gpus_per_user"),
                    format!(
                        "QoS `{}` limits GPUs, but no compute node has one, so Slurm does not count gres/gpu",
                        q.name
                    ),
                )
                .with_hint("leave `max_gpus_per_user` out, or set `compute_nodes.gpu_enabled`"),
            );
        }
    }
    let accounts: HashSet<&str> = unique(
        hpc.accounts.iter().map(|a| a.name.as_str()),
        "/clusters/hpc/accounts",
        "hpc.account-duplicate",
        "account",
        out,
    );
    let account_names: Vec<String> = hpc.accounts.iter().map(|a| a.name.clone()).collect();
    let qos_names: Vec<String> = hpc.qos.iter().map(|q| q.name.clone()).collect();
    let parents: HashMap<&str, &str> = hpc
        .accounts
        .iter()
        .filter_map(|a| a.parent.as_deref().map(|p| (a.name.as_str(), p)))
        .collect();
    for (i, a) in hpc.accounts.iter().enumerate() {
        let at = format!("/clusters/hpc/accounts/{i}");
        if a.name == "root" {
            out.push(
                Diagnostic::error(
                    "hpc.account-reserved",
                    format!("{at}/name"),
                    "`root` is Slurm's own top account and cannot be declared",
                )
                .with_hint("leave `parent` out to make an account a child of `root`"),
            );
        }
        if let Some(p) = a.parent.as_deref() {
            if p != "root" && !accounts.contains(p) {
                out.push(unknown(
                    "hpc.account-parent",
                    format!("{at}/parent"),
                    format!(
                        "account `{}` has parent `{p}`, which `accounts` does not declare",
                        a.name
                    ),
                    p,
                    &account_names,
                    "declare it in `accounts`, or leave `parent` out for Slurm's `root`",
                ));
            } else if in_cycle(&a.name, &parents) {
                out.push(
                    Diagnostic::error(
                        "hpc.account-parent",
                        format!("{at}/parent"),
                        format!("account `{}` is its own ancestor through `parent`", a.name),
                    )
                    .with_hint("accounts form a tree under `root`: break the cycle"),
                );
            }
        }
        for (j, q) in a.qos.iter().enumerate() {
            if !qos.contains(q.as_str()) {
                out.push(unknown(
                    "hpc.qos-unknown",
                    format!("{at}/qos/{j}"),
                    format!(
                        "account `{}` grants QoS `{q}`, which `qos` does not declare",
                        a.name
                    ),
                    q,
                    &qos_names,
                    "declare it in `clusters.hpc.qos`",
                ));
            }
        }
    }
    check_users(config, &hpc.users, &accounts, &account_names, out);
}

fn check_partitions(config: &ClusterConfig, out: &mut Vec<Diagnostic>) {
    let Some(hpc) = &config.clusters.hpc else {
        return;
    };
    let s = &hpc.slurm_config;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, p) in s.partitions.iter().enumerate() {
        let at = format!("{SLURM}/partitions/{i}");
        let name = p.name();
        let valid = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
        if !valid {
            out.push(
                Diagnostic::error(
                    "slurm.partition-name",
                    p.name_pointer(&at),
                    format!("`{name}` is not a usable Slurm partition name"),
                )
                .with_hint("start with a letter; use letters, digits, `_` or `-` (at most 40)"),
            );
        }
        if let Some(first) = names.insert(name, i) {
            out.push(Diagnostic::error(
                "slurm.partition-duplicate",
                p.name_pointer(&at),
                format!("partition `{name}` is listed twice (first at position {first})"),
            ));
        }
        let PartitionSpec::Full(full) = p else {
            continue;
        };
        let sets: Vec<String> = NODE_SETS.iter().map(|s| (*s).to_owned()).collect();
        let mut known = true;
        for (j, n) in full.nodes.iter().enumerate() {
            if set_holds(n, &hpc.compute_nodes).is_none() {
                known = false;
                out.push(unknown(
                    "slurm.partition-nodes",
                    format!("{at}/nodes/{j}"),
                    format!("partition `{name}` names node set `{n}`, which does not exist"),
                    n,
                    &sets,
                    &format!("use one of: {}", NODE_SETS.join(", ")),
                ));
            }
        }
        if known && !partition_holds(p, &hpc.compute_nodes) {
            let has = if hpc.compute_nodes.gpu_units_per_node() > 0 {
                "GPU units"
            } else {
                "no GPU units"
            };
            out.push(
                Diagnostic::error(
                    "slurm.partition-empty",
                    format!("{at}/nodes"),
                    format!(
                        "partition `{name}` holds no node: every compute node has {has}, and it names only {}",
                        full.nodes.join(", ")
                    ),
                )
                .with_hint("name `all`, or the set the compute nodes are in (`gpu` when `gpu_enabled`, else `cpu`)"),
            );
        }
        for (key, t) in [
            ("default_time", full.default_time.as_deref()),
            ("max_time", full.max_time.as_deref()),
        ] {
            if let Some(t) = t {
                time(t, &format!("{at}/{key}"), out);
            }
        }
    }
    if !names.contains_key(s.default_partition.as_str()) {
        let listed: Vec<String> = s.partitions.iter().map(|p| p.name().to_owned()).collect();
        out.push(unknown(
            "slurm.default-partition",
            format!("{SLURM}/default_partition"),
            format!(
                "default partition `{}` is not in `partitions` ({})",
                s.default_partition,
                listed.join(", ")
            ),
            &s.default_partition,
            &listed,
            "add it to `partitions` or pick one of them",
        ));
    }
    time(&s.max_job_time, &format!("{SLURM}/max_job_time"), out);
}

fn check_storage(storage: &crate::config::hpc::SharedStorage, out: &mut Vec<Diagnostic>) {
    if !storage.is_enabled() {
        return;
    }
    let paths = [
        ("home", storage.home_path()),
        ("scratch", storage.scratch_path()),
    ];
    for (key, p) in paths {
        let normal = p.len() > 1
            && !p.ends_with('/')
            && p.split('/')
                .skip(1)
                .all(|c| !c.is_empty() && c != "." && c != "..");
        let system = [
            "/etc", "/usr", "/var", "/boot", "/proc", "/sys", "/dev", "/run", "/tmp",
        ]
        .iter()
        .any(|s| p == *s || p.starts_with(&format!("{s}/")));
        if !normal || system {
            out.push(
                Diagnostic::error(
                    "hpc.storage-path",
                    format!("/clusters/hpc/shared_storage/{key}"),
                    format!("`{p}` cannot be shared: it is not a plain absolute path outside the system's own directories"),
                )
                .with_hint(format!("use a path such as `/{key}` (no `.`, `..`, trailing `/`, nor /etc, /usr, /var, /tmp ...)")),
            );
        }
    }
    let (home, scratch) = (paths[0].1, paths[1].1);
    let within = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
    if within(home, scratch) || within(scratch, home) {
        out.push(
            Diagnostic::error(
                "hpc.storage-path",
                "/clusters/hpc/shared_storage/scratch",
                format!(
                    "scratch `{scratch}` and home `{home}` overlap: each is exported on its own"
                ),
            )
            .with_hint("give them separate paths, e.g. `/home` and `/scratch`"),
        );
    }
}

fn check_users(
    config: &ClusterConfig,
    users: &[HpcUser],
    accounts: &HashSet<&str>,
    account_names: &[String],
    out: &mut Vec<Diagnostic>,
) {
    unique(
        users.iter().map(|u| u.name.as_str()),
        "/clusters/hpc/users",
        "hpc.user-duplicate",
        "user",
        out,
    );
    let login = config.login_user();
    let mut uids: HashMap<u32, &str> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        let at = format!("/clusters/hpc/users/{i}");
        if u.name == login || RESERVED_USERS.contains(&u.name.as_str()) {
            out.push(
                Diagnostic::error(
                    "hpc.user-reserved",
                    format!("{at}/name"),
                    format!(
                        "user `{}` already exists on the VMs (the login user or a system account)",
                        u.name
                    ),
                )
                .with_hint("pick another name"),
            );
        }
        if !(MIN_USER_UID..=MAX_USER_UID).contains(&u.uid) {
            out.push(
                Diagnostic::error(
                    "hpc.user-uid",
                    format!("{at}/uid"),
                    format!("user `{}` has uid {}, outside {MIN_USER_UID}-{MAX_USER_UID}", u.name, u.uid),
                )
                .with_hint(format!(
                    "below 1000 are system accounts and the login user `{login}` takes 1000: use {MIN_USER_UID} to {MAX_USER_UID}"
                )),
            );
        }
        if let Some(other) = uids.insert(u.uid, &u.name) {
            out.push(
                Diagnostic::error(
                    "hpc.user-uid-duplicate",
                    format!("{at}/uid"),
                    format!("users `{other}` and `{}` both have uid {}", u.name, u.uid),
                )
                .with_hint("give each user a uid of their own"),
            );
        }
        if !accounts.contains(u.account.as_str()) {
            out.push(unknown(
                "hpc.user-account",
                format!("{at}/account"),
                format!(
                    "user `{}` is in account `{}`, which `accounts` does not declare",
                    u.name, u.account
                ),
                &u.account,
                account_names,
                "declare it in `clusters.hpc.accounts`",
            ));
        }
    }
}

/// Reports names given twice; returns the set of names.
fn unique<'a>(
    names: impl Iterator<Item = &'a str>,
    list: &str,
    rule: &'static str,
    what: &str,
    out: &mut Vec<Diagnostic>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for (i, n) in names.enumerate() {
        if !seen.insert(n) {
            out.push(
                Diagnostic::error(
                    rule,
                    format!("{list}/{i}/name"),
                    format!("{what} `{n}` is declared twice"),
                )
                .with_hint("merge the two entries"),
            );
        }
    }
    seen
}

fn time(t: &str, at: &str, out: &mut Vec<Diagnostic>) {
    if !is_slurm_time(t) {
        out.push(
            Diagnostic::error(
                "slurm.time-format",
                at,
                format!("`{t}` is not a Slurm time"),
            )
            .with_hint(TIME_HINT),
        );
    }
}

/// An error about a name that does not exist, with a suggestion when one is close.
fn unknown(
    rule: &'static str,
    at: String,
    message: String,
    name: &str,
    candidates: &[String],
    otherwise: &str,
) -> Diagnostic {
    let d = Diagnostic::error(rule, at, message);
    match suggest(name, candidates) {
        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
        None => d.with_hint(otherwise.to_owned()),
    }
}

/// Whether following `parent` from `start` comes back to it.
fn in_cycle(start: &str, parents: &HashMap<&str, &str>) -> bool {
    let mut at = start;
    for _ in 0..=parents.len() {
        match parents.get(at) {
            Some(p) if *p == start => return true,
            Some(p) => at = p,
            None => return false,
        }
    }
    false
}
