//! The HPC site settings as the playbook's variables (`ansible/playbook-hpc.yml`): shared storage, the Unix
//! users, and the Slurm accounting state (`sacctmgr`) the `slurm_accounts` role converges to. Pure: hsw-cli
//! writes the value into the variables file.

use serde_json::{json, Value};

use crate::config::model::ClusterConfig;
use crate::config::rules::cluster_network;

/// The playbook variables of the HPC site settings (empty object without `clusters.hpc`).
///
/// - `hsw_shared_storage` (bool), `hsw_shared_home`, `hsw_shared_scratch`, `hsw_nfs_server` (the controller's
///   address), `hsw_hpc_subnet` (the only network the exports allow);
/// - `hsw_hpc_users`: `[{name, uid, account, ssh_public_key?}]`;
/// - `hsw_slurm_accounts`: what `sacctmgr` must hold: `{cluster, keep_users, qos: [{name, max_wall,
///   max_gpus_per_user}], accounts: [{name, parent, fairshare, qos}], users: [{name, account, qos,
///   default_qos}]}` (`keep_users`: Slurm's `root` and the login user, whose associations are never removed;
///   the login user is also one of `users`, in Slurm's `root` account, since associations are enforced).
pub fn vars(config: &ClusterConfig, controller_ip: &str, login_user: &str) -> Value {
    let Some(hpc) = &config.clusters.hpc else {
        return json!({});
    };
    let storage = hpc.shared_storage();
    let subnet = cluster_network(config, "hpc")
        .and_then(|n| config.global.networks.get(n))
        .map(|n| n.subnet.clone())
        .unwrap_or_default();
    let users: Vec<Value> = hpc
        .users
        .iter()
        .map(|u| {
            let mut v = json!({"name": u.name, "uid": u.uid, "account": u.account});
            if let Some(k) = &u.ssh_public_key {
                v["ssh_public_key"] = json!(k);
            }
            v
        })
        .collect();
    let qos: Vec<Value> = hpc
        .qos
        .iter()
        .map(|q| {
            json!({
                "name": q.name,
                "max_wall": q.max_wall.clone().unwrap_or_default(),
                "max_gpus_per_user": q.max_gpus_per_user,
            })
        })
        .collect();
    let accounts: Vec<Value> = hpc
        .accounts
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "parent": a.parent_name(),
                "fairshare": a.fairshare(),
                "qos": a.qos,
            })
        })
        .collect();
    let mut slurm_users: Vec<Value> = hpc
        .users
        .iter()
        .map(|u| {
            let qos: Vec<String> = hpc
                .accounts
                .iter()
                .find(|a| a.name == u.account)
                .map(|a| a.qos.clone())
                .unwrap_or_default();
            json!({
                "name": u.name,
                "account": u.account,
                "default_qos": qos.first().cloned().unwrap_or_default(),
                "qos": qos,
            })
        })
        .collect();
    // The login user runs hsw's own checks (srun, sinfo): with associations enforced it needs one, in `root`.
    slurm_users.push(json!({"name": login_user, "account": "root", "qos": [], "default_qos": ""}));
    json!({
        "hsw_shared_storage": storage.is_enabled(),
        "hsw_shared_home": storage.home_path(),
        "hsw_shared_scratch": storage.scratch_path(),
        "hsw_nfs_server": controller_ip,
        "hsw_hpc_subnet": subnet,
        "hsw_hpc_users": users,
        "hsw_slurm_accounts": {
            "cluster": super::cluster_name(config),
            "keep_users": ["root", login_user],
            "qos": qos,
            "accounts": accounts,
            "users": slurm_users,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_declares_one_account_one_user_and_a_qos() {
        let cfg = crate::config::validate_str(crate::config::DEFAULT_CONFIG)
            .valid_config()
            .cloned()
            .unwrap_or_else(|| panic!("the embedded default is not valid"));
        let v = vars(&cfg, "192.168.100.10", "hsw");
        assert_eq!(v["hsw_shared_storage"], json!(true));
        assert_eq!(v["hsw_shared_home"], json!("/home"));
        assert_eq!(v["hsw_hpc_subnet"], json!("192.168.100.0/24"));
        let acc = &v["hsw_slurm_accounts"];
        assert_eq!(acc["cluster"], json!("hsw_dev"));
        assert_eq!(acc["keep_users"], json!(["root", "hsw"]));
        assert_eq!(acc["accounts"].as_array().map(Vec::len), Some(1));
        assert_eq!(acc["qos"].as_array().map(Vec::len), Some(1));
        let users = acc["users"].as_array().cloned().unwrap_or_default();
        assert_eq!(users.len(), 2);
        assert_eq!(users[1]["name"], json!("hsw"));
        assert_eq!(users[1]["account"], json!("root"));
        // A user gets the QoS of their account, the first as default.
        assert_eq!(users[0]["default_qos"], acc["qos"][0]["name"]);
        assert_eq!(v["hsw_hpc_users"][0]["account"], acc["accounts"][0]["name"]);
    }

    #[test]
    fn no_hpc_cluster_no_vars() {
        let mut cfg = crate::config::validate_str(crate::config::DEFAULT_CONFIG)
            .valid_config()
            .cloned()
            .unwrap_or_else(|| panic!("the embedded default is not valid"));
        cfg.clusters.hpc = None;
        assert_eq!(vars(&cfg, "x", "hsw"), json!({}));
    }
}
