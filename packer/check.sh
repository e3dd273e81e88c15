#!/usr/bin/env bash
# Offline checks of the Packer template (base.pkr.hcl, once per role: -var role=hpc|cloud), the preseeds and
# the package lists. Needs packer (1.6.6 is what Debian 12 has), debconf-set-selections (package debconf); uses
# nft, shellcheck and apt-cache when present.
# Downloads nothing: every packer call runs with CHECKPOINT_DISABLE=1, and inside a network namespace with
# no network at all when `unshare -n` works (as root), which proves that validate does not fetch the ISO.
#
# Usage: packer/check.sh     prints one line per check ("ok", "skip" with the reason, or "FAIL"); exits 1 on
#                            any failure, 2 when a required tool is missing.
set -euo pipefail
cd "$(dirname "$0")"
export CHECKPOINT_DISABLE=1 PACKER_NO_COLOR=1

template=base.pkr.hcl     # one template; -var role=ROLE picks the image
roles=(hpc cloud)
failures=0
ok()   { printf 'ok   %s\n' "$*"; }
skip() { printf 'skip %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }
indent() { sed 's/^/     | /'; }

for tool in packer debconf-set-selections; do
  command -v "$tool" >/dev/null 2>&1 || { echo "check.sh: '$tool' is not installed" >&2; exit 2; }
done

# Runs a command without any network when this machine allows it.
offline=()
if unshare -n true 2>/dev/null; then offline=(unshare -n); fi
offline_note=${offline:+" (in an empty network namespace)"}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "packer/check.sh: $(packer version | head -n1), $(debconf-set-selections --help 2>&1 | head -n0)$(dpkg-query -W -f='debconf ${Version}' debconf 2>/dev/null || echo debconf)"

# 1. Package lists: every line is a package name.
for role in "${roles[@]}"; do
  if packages/list.sh "$role" > "$tmp/$role.list" 2> "$tmp/err"; then
    ok "packages/list.sh $role: $(wc -l < "$tmp/$role.list") packages (common.list + $role.list)"
  else
    fail "packages/list.sh $role"; indent < "$tmp/err"
  fi
done

# 2. The committed preseeds are what render-preseed.sh makes from preseed.cfg.in and the lists.
if ./render-preseed.sh --check > "$tmp/out" 2>&1; then
  ok "render-preseed.sh --check: http/preseed-{hpc,cloud}.cfg are up to date"
else
  fail "render-preseed.sh --check: run packer/render-preseed.sh"; indent < "$tmp/out"
fi

for role in "${roles[@]}"; do
  cfg=http/preseed-$role.cfg
  # 3. pkgsel/include (read back from the file, independently of the renderer) == the lists.
  n=$(grep -c '^d-i pkgsel/include string ' "$cfg" || true)
  if [ "$n" != 1 ]; then
    fail "$cfg: expected one 'd-i pkgsel/include string' line, found $n"
  else
    grep '^d-i pkgsel/include string ' "$cfg" | sed 's/^d-i pkgsel\/include string //' | tr ' ,' '\n\n' \
      | sed '/^$/d' > "$tmp/$role.include"
    if diff <(sort "$tmp/$role.list") <(sort "$tmp/$role.include") > "$tmp/diff"; then
      ok "$cfg: pkgsel/include = packages/{common,$role}.list ($(wc -l < "$tmp/$role.include") packages)"
    else
      fail "$cfg: pkgsel/include differs from the lists (< lists, > preseed)"; indent < "$tmp/diff"
    fi
  fi
  # 4. debconf-set-selections -c: format errors exit 1, unknown types only warn, so any output fails too.
  if debconf-set-selections -c "$cfg" > "$tmp/out" 2>&1 && [ ! -s "$tmp/out" ]; then
    ok "debconf-set-selections -c $cfg"
  else
    fail "debconf-set-selections -c $cfg"; indent < "$tmp/out"
  fi
  # 5. What the preseed must say.
  for want in 'd-i passwd/root-login boolean false' 'd-i grub-installer/bootdev string /dev/vda' \
              'd-i partman-auto/choose_recipe select hsw-root-noswap' 'd-i pkgsel/upgrade select ' \
              'd-i partman-basicfilesystems/no_swap boolean false' 'd-i preseed/late_command string '; do
    grep -qF -- "$want" "$cfg" || fail "$cfg: missing '$want'"
  done
  if grep -Eq 'linux-swap|method\{ swap \}' "$cfg"; then fail "$cfg: the partman recipe has a swap partition"; fi
  if grep -Eq '^[^#]*passwd/(root-password|user-password)' "$cfg"; then
    fail "$cfg: a password is in the file (it must come from the template's sensitive variable)"
  fi
done
[ "$failures" = 0 ] && ok "preseeds: root login off, no swap, grub on /dev/vda, no password in the files"

# 6. packer fmt.
if packer fmt -check . > "$tmp/out" 2>&1; then
  ok "packer fmt -check ."
else
  fail "packer fmt -check . (run: cd packer && packer fmt .)"; indent < "$tmp/out"
fi

t=$template
for role in "${roles[@]}"; do
  # 7. Full validate (not -syntax-only): the checksum is literal, so nothing is downloaded.
  if "${offline[@]}" packer validate -var "role=$role" "$t" > "$tmp/out" 2>&1; then
    ok "packer validate -var role=$role $t$offline_note"
  else
    fail "packer validate -var role=$role $t"; indent < "$tmp/out"
  fi
  # 8. The template reads the same package set as packages/list.sh.
  if echo 'local.packages' | "${offline[@]}" packer console -var "role=$role" "$t" > "$tmp/out" 2>&1 \
     && sed -n 's/^  "\(.*\)",$/\1/p' "$tmp/out" > "$tmp/$role.hcl" \
     && diff "$tmp/$role.list" "$tmp/$role.hcl" > "$tmp/diff"; then
    ok "$t -var role=$role: local.packages = packages/list.sh $role ($(wc -l < "$tmp/$role.hcl") packages, same order)"
  else
    fail "$t -var role=$role: local.packages differs from packages/list.sh $role"; indent < "$tmp/out"; indent < "$tmp/diff" || true
  fi
  # 9. What the role picks: the preseed, the role's provisioner, the image's name.
  "${offline[@]}" packer inspect -var "role=$role" "$t" > "$tmp/out" 2>&1 || true
  if grep -qx "local.vm_name: \"$role-base.qcow2\"" "$tmp/out" \
     && grep -qx "local.output_directory: \"output/$role-base\"" "$tmp/out" \
     && [ -f "provision/40-$role.sh" ] && [ -f "http/preseed-$role.cfg" ]; then
    ok "$t -var role=$role: builds output/$role-base/$role-base.qcow2 with http/preseed-$role.cfg and provision/40-$role.sh"
  else
    fail "$t -var role=$role: local.vm_name/output_directory are not $role-base, or provision/40-$role.sh or http/preseed-$role.cfg is missing"
    indent < "$tmp/out"
  fi
  # 10. The build password is marked sensitive.
  if grep -qx 'var.build_password: "<sensitive>"' "$tmp/out"; then
    ok "$t -var role=$role: var.build_password is sensitive"
  else
    fail "$t -var role=$role: var.build_password is not marked sensitive"
  fi
  # 11. Bad variables are refused.
  for bad in accelerator=hvf iso_checksum=file:https://example.invalid/SHA256SUMS 'build_password=has space' \
             hostname=Bad_Name mirror_dir=debian; do
    if "${offline[@]}" packer validate -var "role=$role" -var "$bad" "$t" > /dev/null 2>&1; then
      fail "$t: packer validate -var role=$role -var '$bad' passed; the variable's validation block should refuse it"
    fi
  done
done
# The role is required and validated: no default image, no third role without its lists and provisioner.
if "${offline[@]}" packer validate "$t" > "$tmp/out" 2>&1 || ! grep -q 'Unset variable "role"' "$tmp/out"; then
  fail "$t: packer validate without -var role should fail with 'Unset variable \"role\"'"; indent < "$tmp/out"
fi
if "${offline[@]}" packer validate -var role=gpu "$t" > "$tmp/out" 2>&1 || ! grep -q 'The role must be hpc or cloud' "$tmp/out"; then
  fail "$t: packer validate -var role=gpu should fail with the role's validation message"; indent < "$tmp/out"
fi
# Outside comments and descriptions: no remote checksum file, no Packer 1.7+ plugin block.
if grep -Ev '^[[:space:]]*(#|description[[:space:]]*=)' "$t" | grep -Eq '"file:|required_plugins'; then
  fail "$t: a file:... checksum (validate would download it) or required_plugins (Packer 1.7+)"
fi
ok "packer validate refuses no role, role=gpu, accelerator=hvf, file: checksums, bad passwords, host names and mirror dirs"

# 11b. The Kubernetes bundle: a bundle directory validates (its upload's source must exist), a missing or relative
# one is refused; provision/45-k8s-bundle.sh (run by the template and by scripts/build-image.sh --bundle) installs
# a bundle checked file by file into an image root, refuses a changed file and an hpc image, and does nothing
# without one.
fake="$tmp/bundle"
mkdir -p "$fake/bin" "$fake/images"
printf 'kubeadm\n' > "$fake/bin/kubeadm"
printf 'oci\n' > "$fake/images/pause.oci.tar"
sum() { sha256sum < "$1" | cut -d' ' -f1; }
printf '{"kubernetes": "v1.34.4", "binaries": [{"path": "bin/kubeadm", "sha256": "%s"}], "images": [{"path": "images/pause.oci.tar", "sha256": "%s"}]}\n' \
  "$(sum "$fake/bin/kubeadm")" "$(sum "$fake/images/pause.oci.tar")" > "$fake/bundle.json"
bundle_ok=1
if ! "${offline[@]}" packer validate -var role=cloud -var "k8s_bundle=$fake" "$t" > "$tmp/out" 2>&1; then
  fail "$t: packer validate -var role=cloud -var k8s_bundle=$fake"; indent < "$tmp/out"; bundle_ok=0
fi
for bad in "$tmp/no-such-bundle" bundle-relative; do
  if "${offline[@]}" packer validate -var role=cloud -var "k8s_bundle=$bad" "$t" > /dev/null 2>&1; then
    fail "$t: packer validate -var k8s_bundle=$bad passed"; bundle_ok=0
  fi
done
inst() { HSW_BUNDLE=$1 HSW_ROOT=$2 HSW_ROLE=$3 bash provision/45-k8s-bundle.sh > "$tmp/out" 2>&1; }
if ! inst "$fake" "$tmp/root" cloud || [ ! -x "$tmp/root/usr/local/bin/kubeadm" ] \
   || ! cmp -s "$fake/images/pause.oci.tar" "$tmp/root/var/lib/hsw/k8s/images/pause.oci.tar" \
   || ! cmp -s "$fake/bundle.json" "$tmp/root/var/lib/hsw/k8s/bundle.json"; then
  fail "provision/45-k8s-bundle.sh did not install the bundle into an image root"; indent < "$tmp/out"; bundle_ok=0
fi
if inst "$fake" "$tmp/root-hpc" hpc || [ -e "$tmp/root-hpc/usr/local/bin/kubeadm" ]; then
  fail "provision/45-k8s-bundle.sh put a bundle into an hpc image"; bundle_ok=0
fi
if ! inst "$tmp/no-such-bundle" "$tmp/root-none" cloud || [ -e "$tmp/root-none" ]; then
  fail "provision/45-k8s-bundle.sh without a bundle did something or failed"; indent < "$tmp/out"; bundle_ok=0
fi
printf 'changed\n' >> "$fake/images/pause.oci.tar"
if inst "$fake" "$tmp/root-bad" cloud || ! grep -q 'is not what bundle.json says' "$tmp/out"; then
  fail "provision/45-k8s-bundle.sh took a changed image file"; indent < "$tmp/out"; bundle_ok=0
fi
[ "$bundle_ok" = 0 ] || ok "k8s_bundle: validates with a bundle, refuses a missing or relative one; 45-k8s-bundle.sh installs it checked, refuses a changed file and an hpc image, does nothing without one"

# 11c. MLflow (provision/46-mlflow.sh, run by the template and by scripts/build-image.sh): every requirement is
# pinned by == and carries a sha256; its MLflow is the online path's image's version; the script does nothing
# for an hpc image and refuses a root without Python. (The install itself runs where the cloud image is built.)
req=files/mlflow-requirements.txt
mlflow_ok=1
unpinned=$(grep -E '^[A-Za-z0-9]' "$req" | grep -Ev '^[A-Za-z0-9._-]+==[A-Za-z0-9.+-]+ \\$' || true)
[ -z "$unpinned" ] || { fail "$req: not pinned with == and hashes: $unpinned"; mlflow_ok=0; }
n_req=$(grep -cE '^[A-Za-z0-9]' "$req")
n_hashed=$(awk '/^[A-Za-z0-9]/ {p=1; next} p && $1 ~ /^--hash=sha256:[0-9a-f]+$/ && length($1) == 78 {n++; p=0} END {print n+0}' "$req")
[ "$n_req" = "$n_hashed" ] || { fail "$req: $n_req requirements, $n_hashed with a sha256"; mlflow_ok=0; }
want=$(sed -nE 's/^mlflow-skinny==([0-9.]+) .*/\1/p' "$req")
image=$(sed -nE 's/^mlops_k8s_mlflow_image: ghcr.io\/mlflow\/mlflow:v([0-9.]+).*/\1/p' ../ansible/roles/mlops_k8s/defaults/main.yml)
[ -n "$want" ] && [ "$want" = "$image" ] \
  || { fail "$req has mlflow-skinny '$want', mlops_k8s_mlflow_image has MLflow '$image': one version for both"; mlflow_ok=0; }
ml() { HSW_FILES=files HSW_ROOT=$1 HSW_ROLE=$2 bash provision/46-mlflow.sh > "$tmp/out" 2>&1; }
if ! ml "$tmp/ml-hpc" hpc || [ -e "$tmp/ml-hpc" ]; then
  fail "provision/46-mlflow.sh did something for an hpc image"; indent < "$tmp/out"; mlflow_ok=0
fi
mkdir -p "$tmp/ml-bare"
if ml "$tmp/ml-bare" cloud || ! grep -q 'has no /usr/bin/python3' "$tmp/out"; then
  fail "provision/46-mlflow.sh took a root without Python"; indent < "$tmp/out"; mlflow_ok=0
fi
[ "$mlflow_ok" = 0 ] || ok "MLflow: $n_req requirements pinned with sha256, MLflow $want as the online image's; 46-mlflow.sh skips hpc, refuses a root without Python"

# 12. Shell scripts.
scripts=(check.sh render-preseed.sh packages/list.sh provision/*.sh)
for s in "${scripts[@]}"; do bash -n "$s" || fail "bash -n $s"; done
if command -v shellcheck >/dev/null 2>&1; then
  if shellcheck -S warning "${scripts[@]}" > "$tmp/out" 2>&1; then
    ok "shellcheck ${#scripts[@]} scripts"
  else
    fail "shellcheck"; indent < "$tmp/out"
  fi
else
  skip "shellcheck: not installed (bash -n passed)"
fi

# 13. files/: every file is installed by a provisioner or by scripts/build-image.sh (its FILES table), and a file
# both install goes to the same place with the same mode ("FILE DESTINATION MODE" from each).
grep -hoE 'install (-D )?-m [0-7]+ "\$f/[^"]+" [^ ]+' provision/*.sh \
  | sed -E 's/install (-D )?-m ([0-7]+) "\$f\/([^"]+)" (.*)/\3 \4 \2/; s/ "\$r(\/[^"]*)" / \1 /' \
  | sort -u > "$tmp/installs.packer"
sed -n '/^FILES=(/,/^)/p' ../scripts/build-image.sh | sed -n 's/^  "\(.*\)"$/\1/p' | sort -u > "$tmp/installs.image"
files_ok=1
for f in files/*; do
  n=${f#files/}
  if ! grep -q "^$n " "$tmp/installs.packer" "$tmp/installs.image"; then
    fail "files/$n is installed by no provisioner and not by scripts/build-image.sh"; files_ok=0
  fi
done
while read -r n dst mode; do
  [ -f "files/$n" ] || { fail "scripts/build-image.sh installs files/$n, which does not exist"; files_ok=0; continue; }
  p=$(grep "^$n " "$tmp/installs.packer" || true)
  if [ -n "$p" ] && [ "$p" != "$n $dst $mode" ]; then
    fail "files/$n: the provisioners install it as '${p#"$n "}', scripts/build-image.sh as '$dst $mode'"; files_ok=0
  fi
done < "$tmp/installs.image"
[ "$files_ok" = 0 ] || ok "files/: $(ls files | wc -l) files, each installed by a provisioner or build-image.sh, at the same place and mode by both"

# 14. The nftables policy parses (checked in an empty network namespace, nothing is loaded here).
if command -v nft >/dev/null 2>&1 && [ ${#offline[@]} -gt 0 ]; then
  if unshare -n nft -c -f files/nftables.conf > "$tmp/out" 2>&1; then
    ok "nft -c -f files/nftables.conf"
  else
    fail "nft -c -f files/nftables.conf"; indent < "$tmp/out"
  fi
else
  skip "nft -c: needs nft (package nftables) and unshare -n (root)"
fi

# 15. Every package exists in Debian 12, when this is a Debian 12 machine with apt lists.
if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release && apt-cache show --no-all-versions openssh-server >/dev/null 2>&1; then
  mapfile -t all < <(sort -u "$tmp/hpc.list" "$tmp/cloud.list")
  missing=""
  if ! apt-cache show --no-all-versions "${all[@]}" >/dev/null 2>&1; then   # one call; names only on failure
    missing=$(for p in "${all[@]}"; do apt-cache show --no-all-versions "$p" >/dev/null 2>&1 || echo "$p"; done)
    [ -n "$missing" ] || missing="(apt-cache failed)"
  fi
  if [ -z "$missing" ]; then ok "apt-cache: every listed package exists in this machine's bookworm sources"
  else fail "apt-cache: not in bookworm: $missing"; fi
else
  skip "apt-cache: not a Debian 12 machine with apt lists"
fi

if [ "$failures" -gt 0 ]; then
  echo "packer/check.sh: $failures check(s) failed"
  exit 1
fi
echo "packer/check.sh: all checks passed"
