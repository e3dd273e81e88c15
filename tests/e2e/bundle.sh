#!/usr/bin/env bash
# End-to-end test of `hsw-cli bundle build`: the offline Kubernetes bundle, for real, from the Go module proxy.
#
# Usage: tests/e2e/bundle.sh
# Environment:
#   HSW_CLI_BIN      a built hsw-cli (default: cargo build, debug)
#   HSW_BUNDLE_DIR   the bundle cache (default /var/cache/hsw/bundles: built once per machine, reused after)
#   HSW_GO           the go command (default: `go` on PATH, else /usr/local/go/bin/go)
#
# What it checks:
#   build          exits 0 and prints the bundle's directory (a first build on a fresh machine downloads the modules
#                  and compiles Kubernetes, etcd and CoreDNS: minutes; later runs take it from the cache)
#   binaries       kubelet, kubeadm, kubectl and kube-proxy are static and say v1.34.4 (`kubeadm version -o short`,
#                  `--version`): the version was stamped in
#   images         the six archives kubeadm needs (`kubeadm config images list` with the bundle's repository, less
#                  kube-proxy, which runs on the nodes): each is an OCI image layout whose index names the image for
#                  containerd (io.containerd.image.name) and whose every blob has its digest; the layer holds the
#                  command the static pod runs, with its size, and the config's diff id is the layer's digest
#   manifest       bundle.json lists every file with its size and sha256
#   cache          a second build takes the bundle from the cache and builds nothing
# Needs go (with the Go module proxy), gcc with a static libc (libc6-dev), python3. No root, no network namespace:
# nothing is started, only built.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh" bundle.sh

case "${1:-}" in
  -h|--help) show_help 23; exit 0 ;;
  "") ;;
  *) usage_error "unknown argument '$1' (see --help)" ;;
esac

if [ -z "${HSW_GO:-}" ] && ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export HSW_GO=/usr/local/go/bin/go
fi
"${HSW_GO:-go}" version >/dev/null 2>&1 || fail "no go command (set HSW_GO): the bundle is built from Go source modules"
require_tools gcc python3 file

step "build hsw-cli"
cli="${HSW_CLI_BIN:-}"
if [ -z "$cli" ]; then
  cargo_build debug --workspace --bins
  cli="$bin_dir/hsw-cli"
fi

step "hsw-cli bundle build"
t0=$(date +%s)
log=$(mktemp); trap 'rm -f "$log"' EXIT
"$cli" bundle build 2>&1 | tee "$log" >&2 || fail "hsw-cli bundle build failed (above)"
dir=$(sed -n 's/^hsw: bundle \(\/[^ ]*\) (Kubernetes .*/\1/p' "$log" | tail -n1)
{ [ -n "$dir" ] && [ -f "$dir/bundle.json" ]; } || fail "no bundle directory in the output"
info "bundle $dir in $(( $(date +%s) - t0 )) s"

step "the binaries are static and carry the release's version"
for c in kubelet kubeadm kubectl kube-proxy; do
  file -b "$dir/bin/$c" | grep -q 'statically linked' || fail "$c is not static: $(file -b "$dir/bin/$c")"
done
[ "$("$dir/bin/kubeadm" version -o short)" = v1.34.4 ] || fail "kubeadm version says $("$dir/bin/kubeadm" version -o short)"
for c in kubelet kube-proxy; do
  "$dir/bin/$c" --version | grep -qx 'Kubernetes v1.34.4' || fail "$c --version says $("$dir/bin/$c" --version)"
done
"$dir/bin/kubectl" version --client -o json | python3 -c 'import json,sys; v=json.load(sys.stdin)["clientVersion"]; sys.exit(v["gitVersion"] != "v1.34.4")' \
  || fail "kubectl's client version is not v1.34.4"
info "kubelet, kubeadm, kubectl, kube-proxy: static, v1.34.4"

step "the image archives: what kubeadm asks for, each a complete OCI layout named for containerd"
want=$({ "$dir/bin/kubeadm" config images list --kubernetes-version v1.34.4 --image-repository registry.hsw.invalid \
         | grep -v '/kube-proxy:'
        echo "registry.hsw.invalid/hsw/probe:$(sha256sum /bin/busybox | cut -c1-12)"; } | sort)
python3 - "$dir" "$want" <<'EOF' || fail "the bundle's images are not what kubeadm asks for, or not complete (above)"
import hashlib, io, json, sys, tarfile
root, want = sys.argv[1], sorted(sys.argv[2].split())
m = json.load(open(f"{root}/bundle.json"))
names = sorted(i["name"] for i in m["images"])
assert names == want, f"bundle images {names}, kubeadm wants {want}"
for f in m["binaries"] + m["images"]:
    data = open(f"{root}/{f['path']}", "rb").read()
    assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"], f"{f['path']}: size or sha256"
for i in m["images"]:
    t = tarfile.open(f"{root}/{i['path']}")
    files = {x.name: t.extractfile(x).read() for x in t.getmembers() if x.isfile()}
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1], f"{i['path']}: {name} is not its digest"
    d = json.loads(files["index.json"])["manifests"][0]
    assert d["annotations"]["io.containerd.image.name"] == i["name"], d
    man = json.loads(files["blobs/sha256/" + d["digest"][7:]])
    cfg = json.loads(files["blobs/sha256/" + man["config"]["digest"][7:]])
    layer = man["layers"][0]
    assert cfg["rootfs"]["diff_ids"] == [layer["digest"]] and cfg["os"] == "linux" and cfg["architecture"] == "amd64"
    inner = tarfile.open(fileobj=io.BytesIO(files["blobs/sha256/" + layer["digest"][7:]]))
    execs = [x for x in inner.getmembers() if x.isfile()]
    assert len(execs) == 1 and execs[0].mode == 0o755 and execs[0].size > 0, \
        f"{i['name']}: {[(x.name, x.size, oct(x.mode)) for x in execs]}"
    print(f"    {i['name']}: /{execs[0].name} ({execs[0].size} bytes), {len(files)} files, digests hold", file=sys.stderr)
EOF

step "again: from the cache, nothing built"
"$cli" bundle build 2>&1 | tee "$log" >&2 || fail "the second bundle build failed"
grep -q "^hsw: cached bundle $dir is complete" "$log" || fail "the second build did not take the bundle from the cache"
grep -q ', from the cache)$' "$log" || fail "the second build's summary does not say it came from the cache"
info "taken from the cache"

step "PASSED in $(( $(date +%s) - t_all )) s (build times: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["build_seconds"])' "$dir/bundle.json"))"
