# shellcheck shell=bash
# The common preamble of the end-to-end scripts and the benches (tests/e2e/*.sh, tests/bench/*.sh). Sourced,
# never run:
#
#   . "$(dirname "$0")/../lib.sh" NAME      # NAME prefixes every message (e2e, smoke, up.sh, plan-200...)
#
# It sets strict mode (set -euo pipefail), `root` (the repository) and `t_all` (the start, in epoch seconds),
# and gives:
#   step/info/say/fail MSG      progress on stderr ("==> [NAME HH:MM:SS] MSG", "    MSG", "NAME: MSG");
#                               fail prints "NAME: FAILED: MSG" and exits 1
#   usage_error MSG             "NAME: MSG" on stderr, exit 2 (a bad argument or setting)
#   show_help LAST              the script's header comment, lines 2 to LAST, without the leading '# '
#   require_root                fails unless root (network namespaces, libvirtd)
#   require_tools TOOL...       fails naming the first missing tool (scripts/install-deps.sh full installs them)
#   on_exit FUNC                runs FUNC on exit; SIGINT and SIGTERM exit 130 through it
#   sandbox ARGS...             scripts/sandbox.sh --name "$sandbox_name" ARGS...
#   sandbox_terraform TFRC TF ARGS...   Terraform binary TF inside the sandbox, with the CLI configuration TFRC,
#                               no update check, no prompts, and none of the caller's TF_LOG/TF_DATA_DIR/... settings
#   cargo_build debug|release CARGO_ARGS...   cargo build --locked in the repository (output on stderr); sets
#                               `bin_dir` to the directory of the built binaries
#   build_image ARGS...         scripts/build-image.sh ARGS (built once, then cached); sets img_base, img_kernel,
#                               img_initrd
#   provider_mirror DIR BIN     DIR/mirror: a filesystem mirror holding provider BIN as hyperscaler/hsw (its copy's
#                               path in `mirror_bin`), and DIR/cli.tfrc, a CLI configuration that installs
#                               hyperscaler/hsw from it only
#   find_terraform              prints the primary Terraform (HSW_TERRAFORM, else terraform on PATH); 1 if none
#   find_tf103                  prints Terraform 1.0.3 from /opt/hsw/tools/terraform-1.0.3 (root-owned, hash-checked
#                               by scripts/install-tools.sh); 1 if not installed
set -euo pipefail

[ $# -eq 1 ] || { echo "tests/lib.sh: source it with the script's name: . tests/lib.sh NAME" >&2; exit 2; }
lib_name=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034  # read by the scripts that source this
t_all=$(date +%s)

step() { printf '\n==> [%s %s] %s\n' "$lib_name" "$(date +%H:%M:%S)" "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
say() { printf '%s: %s\n' "$lib_name" "$*" >&2; }
fail() { printf '%s: FAILED: %s\n' "$lib_name" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s\n' "$lib_name" "$*" >&2; exit 2; }
show_help() { sed -n "2,$1p" "$0" | sed 's/^# \{0,1\}//'; }

require_root() {
  [ "$(id -u)" -eq 0 ] || fail "run as root (network namespaces, libvirtd)"
}

require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is missing: run scripts/install-deps.sh full"
  done
}

on_exit() {
  # shellcheck disable=SC2064  # the function's name, now
  trap "$1" EXIT
  trap 'exit 130' INT TERM
}

sandbox_name=""   # each script sets its own
sandbox() {
  [ -n "$sandbox_name" ] || fail "tests/lib.sh: set sandbox_name before calling sandbox"
  "$root/scripts/sandbox.sh" --name "$sandbox_name" "$@"
}

sandbox_terraform() {
  local tfrc=$1 tf=$2
  shift 2
  sandbox exec -- env -u TF_LOG -u TF_LOG_PROVIDER -u TF_LOG_CORE -u TF_REATTACH_PROVIDERS -u TF_PLUGIN_CACHE_DIR \
    -u TF_DATA_DIR -u TF_WORKSPACE \
    TF_CLI_CONFIG_FILE="$tfrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0 "$tf" "$@"
}

bin_dir=""
# The e2e scripts all build with `cargo_build debug --workspace --bins`: one command, so one feature set, built
# once in a test run (`-p X` unifies features per selection: each script's own selection rebuilt ~60 s of crates).
cargo_build() {
  local profile=$1 target_dir
  shift
  case "$profile" in
    debug) (cd "$root" && cargo build --locked "$@") >&2 ;;
    release) (cd "$root" && cargo build --release --locked "$@") >&2 ;;
    *) fail "cargo_build: the profile must be debug or release, not '$profile'" ;;
  esac
  target_dir=$(cd "$root" && cargo metadata --no-deps --format-version 1 | jq -r .target_directory)
  # shellcheck disable=SC2034  # read by the scripts that source this
  bin_dir="$target_dir/$profile"
}

img_base="" img_kernel="" img_initrd=""
build_image() {
  local out
  out=$("$root/scripts/build-image.sh" "$@")
  img_base=$(sed -n 's/^base=//p' <<< "$out")
  img_kernel=$(sed -n 's/^kernel=//p' <<< "$out")
  img_initrd=$(sed -n 's/^initrd=//p' <<< "$out")
  { [ -f "$img_base" ] && [ -f "$img_kernel" ] && [ -f "$img_initrd" ]; } \
    || fail "scripts/build-image.sh $* did not print the paths of an image"
}

mirror_bin=""
provider_mirror() {
  local dir=$1 bin=$2 plat="$1/mirror/registry.terraform.io/hyperscaler/hsw/0.1.0/linux_amd64"
  mkdir -p "$plat"
  mirror_bin="$plat/terraform-provider-hsw"
  cp "$bin" "$mirror_bin"
  cat > "$dir/cli.tfrc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$dir/mirror"
    include = ["hyperscaler/hsw"]
  }
}
EOF
}

find_terraform() {
  local tf="${HSW_TERRAFORM:-$(command -v terraform || true)}"
  [ -n "$tf" ] && [ -x "$tf" ] && echo "$tf"
}

find_tf103() {
  local f=/opt/hsw/tools/terraform-1.0.3/terraform
  [ -x "$f" ] && echo "$f"
}
