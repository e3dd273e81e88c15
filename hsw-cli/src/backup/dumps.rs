//! The application dumps a backup takes inside the guests, over SSH (inside the sandbox), each streamed into
//! a file of the backup: Slurm's accounting database (`mysqldump --single-transaction`, consistent while
//! slurmdbd writes), the shared home directories (`tar` on the controller, which exports them), and the cloud
//! cluster's PostgreSQL (`pg_dumpall`: MLflow's databases and their roles). The disks hold the same data; the
//! dumps are what a person restores one database or one user's files from without rolling a VM back.

use hsw_core::ansible::hosts::{Deployment, Host, Role};
use hsw_core::config::ClusterConfig;
use hsw_core::slurm::ACCOUNTING_DB;

/// One dump: its file in `dumps/`, where it is taken and the command that prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// The file name in `dumps/`.
    pub file: &'static str,
    /// The VM it is taken on.
    pub host: Host,
    /// The command run there (fixed words; paths from the validated config).
    pub remote: Vec<String>,
    /// What it is, in words.
    pub what: &'static str,
}

/// The dumps of a deployment: accounting and home on the HPC controller, PostgreSQL on its host.
pub fn planned(config: &ClusterConfig, d: &Deployment) -> Vec<Dump> {
    let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut out = Vec::new();
    if let (Some(hpc), Some(ctl)) = (&config.clusters.hpc, d.with_role(Role::Controller).next()) {
        out.push(Dump {
            file: "slurm-accounting.sql",
            host: ctl.clone(),
            remote: words(&[
                "sudo",
                "-n",
                "mysqldump",
                "--single-transaction",
                "--routines",
                "--events",
                "--databases",
                ACCOUNTING_DB,
            ]),
            what: "Slurm's accounting database (mysqldump)",
        });
        let storage = hpc.shared_storage();
        if storage.is_enabled() {
            let home = storage.home_path().trim_start_matches('/').to_owned();
            let mut remote = words(&[
                "sudo",
                "-n",
                "tar",
                "--numeric-owner",
                "-C",
                "/",
                "-cf",
                "-",
            ]);
            remote.push(home);
            out.push(Dump {
                file: "home.tar",
                host: ctl.clone(),
                remote,
                what: "the shared home directories (tar)",
            });
        }
    }
    if let Some(pg) = d.postgres_host() {
        out.push(Dump {
            file: "postgresql.sql",
            host: pg.clone(),
            remote: words(&[
                "sudo",
                "-n",
                "-u",
                "postgres",
                "pg_dumpall",
                "--clean",
                "--if-exists",
            ]),
            what: "PostgreSQL, every database and role (pg_dumpall)",
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hsw_core::ansible::hosts::planned_hosts;

    #[test]
    fn the_default_deployment_dumps_accounting_home_and_postgresql() {
        let s = crate::session::Session::load(None).unwrap_or_else(|e| panic!("{e}"));
        let d = planned_hosts(&s.config, s.plan().unwrap_or_else(|e| panic!("{e}")));
        let dumps = planned(&s.config, &d);
        let files: Vec<(&str, &str)> = dumps
            .iter()
            .map(|x| (x.file, x.host.name.as_str()))
            .collect();
        assert_eq!(
            files,
            [
                ("slurm-accounting.sql", "hsw-dev-controller-1"),
                ("home.tar", "hsw-dev-controller-1"),
                ("postgresql.sql", "hsw-dev-control-plane-1"),
            ]
        );
        assert_eq!(dumps[1].remote.last().map(String::as_str), Some("home"));
        assert!(dumps[0].remote.contains(&"slurm_acct_db".to_owned()));
    }
}
