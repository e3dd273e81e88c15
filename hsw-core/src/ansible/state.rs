//! Where hsw keeps what it generates for a deployment: the state directory (by default `.hsw/` next to the
//! Terraform root module, i.e. under the Terraform directory's parent).
//!
//! ```text
//! .hsw/
//!   ssh/<cluster>/id_ed25519        per-cluster SSH key (0600); id_ed25519.pub goes to cloud-init
//!   ssh/<cluster>/known_hosts       host keys accepted on first contact (StrictHostKeyChecking=accept-new)
//!   munge/<cluster>/munge.key       the cluster's Munge key (1024 random bytes, 0400)
//!   munge/<cluster>/slurmdbd.password  slurmdbd's MariaDB password (made once, 0600; never logged, never in argv)
//!   ansible/inventory.yml           the inventory `hsw-cli ansible` runs against
//!   ansible/<cluster>-vars.json     extra variables for the cluster's playbook (rendered config files)
//!   slurm/<cluster>/slurm.conf      rendered Slurm files, for reading (the playbook gets them from the vars file)
//! ```
//!
//! Only paths are computed here; `hsw-cli` creates the files.

use std::path::{Path, PathBuf};

/// The name of the state directory.
pub const STATE_DIR_NAME: &str = ".hsw";

/// The layout of a state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    root: PathBuf,
}

impl StateLayout {
    /// A layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> StateLayout {
        StateLayout { root: root.into() }
    }

    /// The default state directory for a Terraform directory: `.hsw` in its parent (`terraform` → `.hsw`,
    /// `/x/terraform` → `/x/.hsw`).
    pub fn for_terraform_dir(terraform_dir: &Path) -> StateLayout {
        let parent = terraform_dir.parent().unwrap_or(Path::new(""));
        StateLayout::new(parent.join(STATE_DIR_NAME))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A cluster's SSH directory.
    pub fn ssh_dir(&self, cluster: &str) -> PathBuf {
        self.root.join("ssh").join(cluster)
    }

    /// A cluster's SSH private key (what Ansible logs in with).
    pub fn ssh_private_key(&self, cluster: &str) -> PathBuf {
        self.ssh_dir(cluster).join("id_ed25519")
    }

    /// A cluster's SSH public key (what cloud-init authorizes in the cluster's VMs).
    pub fn ssh_public_key(&self, cluster: &str) -> PathBuf {
        self.ssh_dir(cluster).join("id_ed25519.pub")
    }

    /// A cluster's known_hosts file.
    pub fn known_hosts(&self, cluster: &str) -> PathBuf {
        self.ssh_dir(cluster).join("known_hosts")
    }

    /// A cluster's Munge key.
    pub fn munge_key(&self, cluster: &str) -> PathBuf {
        self.root.join("munge").join(cluster).join("munge.key")
    }

    /// A cluster's slurmdbd database password, beside its Munge key.
    pub fn slurmdbd_password(&self, cluster: &str) -> PathBuf {
        self.root
            .join("munge")
            .join(cluster)
            .join("slurmdbd.password")
    }

    /// The Ansible directory (inventory, extra variables).
    pub fn ansible_dir(&self) -> PathBuf {
        self.root.join("ansible")
    }

    /// The inventory file.
    pub fn inventory(&self) -> PathBuf {
        self.ansible_dir().join("inventory.yml")
    }

    /// The extra-variables file of a cluster's playbook.
    pub fn extra_vars(&self, cluster: &str) -> PathBuf {
        self.ansible_dir().join(format!("{cluster}-vars.json"))
    }

    /// Where a cluster's rendered Slurm files are kept.
    pub fn slurm_dir(&self, cluster: &str) -> PathBuf {
        self.root.join("slurm").join(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_state_dir_is_next_to_the_terraform_dir() {
        assert_eq!(
            StateLayout::for_terraform_dir(Path::new("terraform")).root(),
            Path::new(".hsw")
        );
        assert_eq!(
            StateLayout::for_terraform_dir(Path::new("/x/terraform")).root(),
            Path::new("/x/.hsw")
        );
        assert_eq!(
            StateLayout::new("/s").ssh_public_key("hpc"),
            Path::new("/s/ssh/hpc/id_ed25519.pub")
        );
    }
}
