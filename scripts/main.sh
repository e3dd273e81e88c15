#!/usr/bin/env bash
# The main job on the embedded default configuration: installs what is missing, builds,
# checks the host and validates the default cluster definition.
# Usage: scripts/main.sh            (from the repository root, as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh full
scripts/install-tools.sh terraform
cargo build --release --locked --workspace
bin=target/release/hsw-cli
echo; echo "==> hsw-cli check (embedded default)"
"$bin" check
echo; echo "==> hsw-cli validate (embedded default)"
"$bin" validate
echo; echo "==> hsw-cli gpu plan (embedded default)"
"$bin" gpu plan
