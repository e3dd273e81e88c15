#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every check and test.
# Usage: scripts/test.sh            (from the repository root, as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never NO_COLOR=1

# Each step says when it starts, in seconds since the command started (the README's test table comes from these).
t_start=$(date +%s)
step() { printf '\n==> [%d s] %s\n' "$(( $(date +%s) - t_start ))" "$*"; }

step "dependencies"
scripts/install-deps.sh test
scripts/install-tools.sh
export HSW_REQUIRE_TERRAFORM=1 HSW_REQUIRE_TOFU=1 HSW_REQUIRE_ANSIBLE=1 HSW_REQUIRE_ANSIBLE_LINT=1 HSW_REQUIRE_PACKER=1 HSW_REQUIRE_VIRT_XML_VALIDATE=1 HSW_REQUIRE_SHELLS=1 CHECKPOINT_DISABLE=1

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Ansible lint (production profile)"
ansible/lint.sh --install

step "unit, fixture and integration tests"
cargo test --workspace --locked

step "Packer template (both roles) and preseeds (validate offline, fmt, debconf)"
packer/check.sh

step "end to end: the provider on real libvirt in a sandbox netns, Terraform 1.11 and 1.0"
tests/e2e/run.sh

step "end to end: hsw-cli bundle build (Kubernetes, etcd, CoreDNS, pause from the Go module proxy; cached per machine)"
tests/e2e/bundle.sh

step "end to end: hsw-cli up on the default config (Slurm answers srun -N2; the platform playbooks and their checks), grow and shrink, status, backup and restore, up again on the restored deployment (no change), down (nothing left)"
tests/e2e/up.sh

step "fuzz target (build, then a bounded run over the examples)"
# cargo-fuzz needs nightly flags; the machine's only toolchain is stable, so unlock them.
export RUSTC_BOOTSTRAP=1
(cd fuzz && cargo fuzz build --dev validate)
corpus=$(mktemp -d); trap 'rm -rf "$corpus"' EXIT
cp examples/*.yaml tests/validate/*.yaml fuzz/seeds/*.yaml "$corpus"/
(cd fuzz && cargo fuzz run --dev validate "$corpus" -- -max_total_time=20 -rss_limit_mb=1024 -timeout=10)
unset RUSTC_BOOTSTRAP

step "all tests passed"
