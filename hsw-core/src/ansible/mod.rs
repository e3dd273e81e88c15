//! The Ansible hand-off: which VMs exist ([`hosts`]: Terraform's `hsw_inventory` output, or the hosts
//! `cluster.yaml` plans), the inventory built from them ([`inventory`]: YAML, INI, JSON and Ansible's
//! dynamic-inventory JSON), and where hsw keeps its per-cluster secrets and generated files ([`state`]).
//!
//! Everything here is pure: the caller reads `terraform output -json` and writes the files.

pub mod hosts;
pub mod inventory;
pub mod state;

pub use hosts::{Deployment, GpuUnit, Host, HostsError, Role, UnitKind};
pub use inventory::Inventory;
pub use state::StateLayout;
