#!/usr/bin/env bash
# Cargo-installed tools the test command needs, idempotently.
set -euo pipefail
if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "install-tools: installing cargo-fuzz" >&2
  cargo install --locked --quiet cargo-fuzz
fi
echo "install-tools: cargo-fuzz present" >&2
