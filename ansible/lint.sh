#!/usr/bin/env bash
# Lints every playbook and role under ansible/ with ansible-lint's `production` profile.
#
# Usage: ansible/lint.sh [--install]
#   --install   when ansible-lint is missing, install it from PyPI into target/ansible-lint (a venv; it brings its
#               own ansible-core, so the system's Ansible is left alone), every package pinned by version and sha256
#               in ansible/lint-requirements.txt (pip --require-hashes)
# Environment:
#   HSW_ANSIBLE_LINT=PATH          the ansible-lint binary (default: target/ansible-lint/bin/ansible-lint, then PATH)
#   HSW_REQUIRE_ANSIBLE_LINT=1     a missing ansible-lint is a failure, not a skip (CI)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/target/ansible-lint"
install=0
case "${1:-}" in
  --install) install=1 ;;
  "") ;;
  -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "lint: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

find_lint() {
  if [ -n "${HSW_ANSIBLE_LINT:-}" ]; then echo "$HSW_ANSIBLE_LINT"; return 0; fi
  if [ -x "$venv/bin/ansible-lint" ]; then echo "$venv/bin/ansible-lint"; return 0; fi
  command -v ansible-lint 2>/dev/null
}

lint=$(find_lint || true)
if [ -z "$lint" ] && [ "$install" = 1 ]; then
  echo "lint: installing ansible-lint into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --require-hashes -r "$root/ansible/lint-requirements.txt"
  lint="$venv/bin/ansible-lint"
fi
if [ -z "$lint" ]; then
  if [ "${HSW_REQUIRE_ANSIBLE_LINT:-0}" = 1 ]; then
    echo "lint: FAILED: ansible-lint is not installed (run ansible/lint.sh --install)" >&2
    exit 1
  fi
  echo "lint: SKIPPED: ansible-lint is not installed (ansible/lint.sh --install installs it)" >&2
  exit 0
fi

cd "$root"
# The venv's bin first, so ansible-lint finds the ansible-core it was installed with.
PATH="$(dirname "$lint"):$PATH" "$lint" --offline --profile production ansible/
