#!/bin/bash
# Cloud role: MLflow's tracking server in /opt/mlflow, a venv of the image's own Python, from
# files/mlflow-requirements.txt (every package pinned by version and sha256; `--require-hashes --no-deps` refuses
# anything else). The ansible role mlflow_server runs it as a systemd unit on the VM that holds MLflow's PostgreSQL,
# so the guests need no internet for it.
# One script for both image builders: the Packer template runs it in the build VM, which installs from PyPI;
# scripts/build-image.sh runs it on its image root (HSW_ROOT) with the wheels it downloaded on the build host
# (HSW_WHEELS), so the image root never reaches the network.
# Environment: HSW_FILES   the directory holding mlflow-requirements.txt (packer/files/)
#              HSW_ROOT    the image's root (default: /, the running system)
#              HSW_WHEELS  a directory of the wheels to install (pip --no-index --find-links); empty: PyPI
#              HSW_ROLE    the image's role: nothing is done but for cloud
set -euo pipefail
f=${HSW_FILES:?}
r=${HSW_ROOT:-}
wheels=${HSW_WHEELS:-}
die() { echo "46-mlflow: $*" >&2; exit 1; }

if [ "${HSW_ROLE:-cloud}" != cloud ]; then
  echo "46-mlflow: not a cloud image ('${HSW_ROLE}'): no MLflow"
  exit 0
fi
[ -f "$f/mlflow-requirements.txt" ] || die "$f/mlflow-requirements.txt is missing"
[ -x "$r/usr/bin/python3" ] || die "the image has no /usr/bin/python3"

# In the image root (or the running system): Python's own venv module, then pip of the venv. The paths inside are
# fixed; the wheels are copied in and removed again.
run() { if [ -n "$r" ]; then chroot "$r" "$@"; else "$@"; fi; }
install -d -m 0755 "$r/opt/mlflow"
install -m 0644 "$f/mlflow-requirements.txt" "$r/opt/mlflow/requirements.txt"
run /usr/bin/python3 -m venv /opt/mlflow || die "python3 -m venv failed (is python3-venv in the image?)"
src=(--index-url https://pypi.org/simple)
if [ -n "$wheels" ]; then
  [ -d "$wheels" ] || die "HSW_WHEELS=$wheels is not a directory"
  rm -rf "$r/tmp/hsw-wheels"
  cp -r "$wheels" "$r/tmp/hsw-wheels"
  src=(--no-index --find-links /tmp/hsw-wheels)
fi
run /opt/mlflow/bin/pip install --isolated --quiet --disable-pip-version-check --no-cache-dir --no-deps --require-hashes \
  "${src[@]}" -r /opt/mlflow/requirements.txt || die "pip install of /opt/mlflow/requirements.txt failed (above)"
rm -rf "$r/tmp/hsw-wheels"
run /opt/mlflow/bin/mlflow --version >/dev/null || die "/opt/mlflow/bin/mlflow does not run"
echo "46-mlflow: $(run /opt/mlflow/bin/mlflow --version) in /opt/mlflow"
