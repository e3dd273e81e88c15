#!/usr/bin/env bash
# The main job on the embedded default configuration: installs what is missing, builds, checks the
# host, validates and plans the default cluster, then brings it up in a sandbox network namespace
# (Terraform + the hsw provider on a private libvirtd, then Ansible: a working Slurm cluster).
# Usage: scripts/main.sh            (from the repository root, as root on Debian 12)
#        target/release/hsw-cli down   tears it all down again
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh full
scripts/install-tools.sh terraform
cargo build --release --locked -p hsw-cli -p terraform-provider-hsw
bin=target/release/hsw-cli
export HSW_PROVIDER_BIN="$PWD/target/release/terraform-provider-hsw"
echo; echo "==> hsw-cli provider install (Terraform and OpenTofu find it with no CLI configuration)"
"$bin" provider install --binary "$HSW_PROVIDER_BIN"
echo; echo "==> hsw-cli check (embedded default)"
"$bin" check
echo; echo "==> hsw-cli validate (embedded default)"
"$bin" validate
echo; echo "==> hsw-cli gpu plan (embedded default)"
"$bin" gpu plan
echo; echo "==> hsw-cli up (embedded default, in a sandbox netns)"
"$bin" up
