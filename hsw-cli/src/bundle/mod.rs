//! `hsw-cli bundle build`: the offline Kubernetes bundle, built from source modules on this machine, the way
//! air-gapped sites prepare one (Kubespray's offline mode, kubeadm's air-gapped guide), with no registry.
//!
//! From the Go module proxy, pinned to one release (`--release`, default [`DEFAULT_RELEASE`]):
//! - `k8s.io/kubernetes` with its staging modules (`k8s.io/api`, `k8s.io/client-go`, …) pinned to the same
//!   release (`v0.<minor>.<patch>`, read from the release's own `go.mod`): kubelet, kubeadm, kubectl and
//!   kube-proxy for the VMs, kube-apiserver, kube-controller-manager and kube-scheduler for their static pods;
//!   static (`CGO_ENABLED=0`), with the version stamped in by `-ldflags -X` as Kubernetes' own build does, so
//!   that `kubeadm version`, the components' `--version` and kubeadm's image tags agree;
//! - etcd (`go.etcd.io/etcd/server/v3`) and CoreDNS (`github.com/coredns/coredns`) at the versions this
//!   kubeadm asks for (`kubeadm config images list`), and the pause binary from the release's own
//!   `build/pause/linux/pause.c` (gcc, static);
//! - and, for `up`'s pod-network check, a probe image holding Debian's static busybox (`busybox-static`, the
//!   host's `/bin/busybox`, or `--busybox`): `httpd`, `wget` and `nslookup` in a pod, nothing pulled.
//!
//! Each image kubeadm needs becomes an OCI archive ([`oci`]) named `registry.hsw.invalid/<name>:<tag>`
//! ([`IMAGE_REPOSITORY`], a name that never resolves: kubeadm's `imageRepository`, containerd's
//! `sandbox_image`), to be imported into containerd's `k8s.io` namespace before kubeadm runs. The bundle's
//! `bundle.json` lists every file with its size and sha256, the versions, and how long each step took.
//!
//! Cached by content like the guest images: `<cache>/k8s-<release>-<key>/`, the key a hash of the release, the
//! Go version, the image repository, the busybox binary and the bundle format; a complete bundle (every file of its manifest there
//! with its sha256) is reused, anything else is built again in a `.build-*` directory and renamed into place.
//! `go` and `gcc` run through the [`Runner`], so the unit tests below walk the whole build over the fake.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::runner::{Cmd, Runner, SystemRunner};
use crate::up::say;

pub mod oci;

/// The Kubernetes release built when none is named.
pub const DEFAULT_RELEASE: &str = hsw_core::config::model::KUBERNETES_BUNDLE_RELEASE;

/// The registry name of the bundle's images: never resolved, nothing is pulled from it.
pub const IMAGE_REPOSITORY: &str = "registry.hsw.invalid";

/// The layout of the bundle directory and its manifest; a change rebuilds every cached bundle.
pub const FORMAT: u32 = 2;

/// The static busybox the probe image is made of (Debian's `busybox-static`).
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// The probe image's name (its tag is the busybox binary's sha256, first 12 digits).
pub const PROBE_IMAGE: &str = "hsw/probe";

/// The commands that run on the VMs (into `/usr/local/bin`).
pub const NODE_COMMANDS: [&str; 4] = ["kubelet", "kubeadm", "kubectl", "kube-proxy"];

/// The commands that run in kubeadm's static pods (one image each).
pub const CONTROL_PLANE_COMMANDS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The default cache directory.
pub const DEFAULT_CACHE: &str = "/var/cache/hsw/bundles";

/// `hsw-cli bundle`.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Build the offline Kubernetes bundle from source modules (binaries, OCI image archives, manifest), or
    /// reuse the cached one.
    Build(BuildArgs),
}

/// `hsw-cli bundle build`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// The Kubernetes release (`X.Y.Z`).
    #[arg(long, value_name = "X.Y.Z", default_value = DEFAULT_RELEASE)]
    pub release: String,
    /// The cache directory (default `/var/cache/hsw/bundles`, or `HSW_BUNDLE_DIR`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Rebuild even when the cache holds a complete bundle.
    #[arg(long)]
    pub force: bool,
    /// The static busybox for the probe image `up` checks the pod network with.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_BUSYBOX)]
    pub busybox: PathBuf,
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The binary's name, or the image's full name.
    pub name: String,
    /// Its path in the bundle.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256 (hex).
    pub sha256: String,
}

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The Kubernetes version (`vX.Y.Z`).
    pub kubernetes: String,
    /// kubeadm's `imageRepository`.
    pub image_repository: String,
    /// The Go toolchain that built it.
    pub go: String,
    /// Module versions: `kubernetes`, `etcd`, `coredns`; and `pause`'s version.
    pub components: BTreeMap<String, String>,
    /// The binaries for the VMs.
    pub binaries: Vec<FileEntry>,
    /// The image archives.
    pub images: Vec<FileEntry>,
    /// Seconds each step took when it was built.
    pub build_seconds: BTreeMap<String, u64>,
}

/// A bundle on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Whether this run built it (else it came from the cache).
    pub built: bool,
}

/// Runs a `bundle` subcommand; returns the exit code.
pub fn run(cmd: &BundleCommand, out: &mut dyn Write) -> u8 {
    match cmd {
        BundleCommand::Build(args) => match build(args, &SystemRunner, out) {
            Ok(b) => {
                let m = &b.manifest;
                let _ = writeln!(
                    out,
                    "hsw: bundle {} (Kubernetes {}, etcd {}, CoreDNS {}, pause {}; {} binaries, {} images{})",
                    b.dir.display(),
                    m.kubernetes,
                    m.components.get("etcd").map_or("?", String::as_str),
                    m.components.get("coredns").map_or("?", String::as_str),
                    m.components.get("pause").map_or("?", String::as_str),
                    m.binaries.len(),
                    m.images.len(),
                    if b.built { ", built now" } else { ", from the cache" }
                );
                crate::exit::OK
            }
            Err(e) => e.report(),
        },
    }
}

/// The cache directory: `--out`, `HSW_BUNDLE_DIR`, or [`DEFAULT_CACHE`].
pub fn cache_dir(out: Option<&Path>) -> PathBuf {
    out.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HSW_BUNDLE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}

/// `X.Y.Z` with numbers only (it becomes a module version and a directory name).
fn check_release(release: &str) -> Result<(u64, u64, u64), Error> {
    let parts: Vec<Option<u64>> = release
        .split('.')
        .map(|p| {
            (!p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect();
    match parts.as_slice() {
        [Some(1), Some(minor), Some(patch)] => Ok((1, *minor, *patch)),
        _ => Err(Error::cannot_run(format!(
            "--release {release:?} is not a Kubernetes release: give X.Y.Z, e.g. {DEFAULT_RELEASE}"
        ))),
    }
}

/// The cache key of a bundle (`busybox`: the probe's binary's sha256).
fn key(release: &str, go: &str, busybox: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "format {FORMAT}\nrelease {release}\ngo {go}\nrepository {IMAGE_REPOSITORY}\nbusybox {busybox}\n"
    ));
    format!("{:x}", h.finalize())[..16].to_owned()
}

/// The sha256 (hex) and size of a file.
fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    hsw_core::fsx::file_sha256(path).map(|(size, sum)| (sum, size))
}

/// The cached bundle in `dir`, if it is complete: its manifest reads, and every file it lists is there with its
/// size and sha256. `Err` names what is wrong (for the message that says why it is built again).
pub fn load_complete(dir: &Path) -> Result<Manifest, String> {
    let text = std::fs::read_to_string(dir.join("bundle.json"))
        .map_err(|e| format!("no readable bundle.json ({e})"))?;
    let m: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("bundle.json does not read: {e}"))?;
    if m.format != FORMAT {
        return Err(format!(
            "bundle.json is of format {}, this hsw writes {FORMAT}",
            m.format
        ));
    }
    for f in m.binaries.iter().chain(&m.images) {
        let plain = |name: &str| {
            !name.is_empty()
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        let inside = match f.path.split_once('/') {
            Some(("bin" | "images", name)) => plain(name),
            _ => false,
        };
        if !inside {
            return Err(format!(
                "bundle.json lists {:?}: not a bin/NAME or images/NAME of the bundle",
                f.path
            ));
        }
        let p = dir.join(&f.path);
        match file_sha256(&p) {
            Ok((sum, size)) if sum == f.sha256 && size == f.size => {}
            Ok(_) => {
                return Err(format!(
                    "{} is not what bundle.json says (size or sha256)",
                    f.path
                ))
            }
            Err(e) => return Err(format!("{}: {e}", f.path)),
        }
    }
    Ok(m)
}

/// A step's command failed: the error names it and where its output went.
fn check(status: std::process::ExitStatus, what: &str, fix: &str) -> Result<(), Error> {
    if status.success() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} failed ({status}; its output is above); {fix}"
        )))
    }
}

/// Where the official Go tarball installs (`go` when it is not on the `PATH`, e.g. root's under `sudo`).
const GO_TARBALL: &str = "/usr/local/go/bin/go";

/// The go command: `HSW_GO`, else `go` on the `PATH`, else [`GO_TARBALL`] when it is there.
fn go_command() -> std::ffi::OsString {
    if let Some(go) = std::env::var_os("HSW_GO") {
        return go;
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("go").is_file()));
    if !on_path && Path::new(GO_TARBALL).is_file() {
        return GO_TARBALL.into();
    }
    "go".into()
}

/// `go` with hsw's settings: modules on, no workspace, the machine's own toolchain, no VCS stamping.
fn go(dir: &Path, args: &[&str]) -> Cmd {
    Cmd::new(go_command())
        .args(args)
        .current_dir(dir)
        .env("GO111MODULE", "on")
        .env("GOWORK", "off")
        .env("GOFLAGS", "-mod=mod -buildvcs=false")
        .env("CGO_ENABLED", "0")
}

/// What `go mod download -json` says of a module.
#[derive(Debug, Deserialize)]
struct Download {
    #[serde(rename = "GoMod", default)]
    go_mod: Option<PathBuf>,
    #[serde(rename = "Dir", default)]
    dir: Option<PathBuf>,
    #[serde(rename = "Error", default)]
    error: Option<String>,
}

/// The staging modules a `k8s.io/kubernetes` go.mod replaces with its own directories (`k8s.io/api =>
/// ./staging/src/k8s.io/api`): they must be pinned to the release's `v0.<minor>.<patch>` when it is a dependency.
pub fn staging_modules(go_mod: &str) -> Vec<String> {
    go_mod
        .lines()
        .filter_map(|l| {
            let (from, to) = l
                .trim()
                .trim_start_matches("replace")
                .trim()
                .split_once("=>")?;
            to.trim()
                .starts_with("./staging/")
                .then(|| from.trim().to_owned())
                .filter(|m| m.starts_with("k8s.io/") && !m.contains(char::is_whitespace))
        })
        .collect()
}

/// The go.mod of the Kubernetes build: `k8s.io/kubernetes` at the release, its staging modules at
/// `v0.<minor>.<patch>`.
pub fn kubernetes_go_mod(release: &str, staging: &[String]) -> String {
    let staging_version = format!("v0.{}", release.split_once('.').map_or("", |(_, r)| r));
    let mut s = format!(
        "// Written by hsw-cli bundle build.\nmodule hsw.invalid/bundle/kubernetes\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes v{release}\n\nreplace (\n"
    );
    for m in staging {
        s.push_str(&format!("\t{m} => {m} {staging_version}\n"));
    }
    s.push_str(")\n");
    s
}

/// `-ldflags` that stamp the version in, as Kubernetes' `hack/lib/version.sh` does.
pub fn version_ldflags(release: &str) -> String {
    let (_, minor, _) = check_release(release).unwrap_or((1, 0, 0));
    let mut ld = String::from("-s -w");
    for p in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        ld.push_str(&format!(
            " -X {p}.gitVersion=v{release} -X {p}.gitMajor=1 -X {p}.gitMinor={minor} -X {p}.gitTreeState=clean \
             -X {p}.buildDate=1970-01-01T00:00:00Z"
        ));
    }
    ld
}

/// The images kubeadm asks for (`kubeadm config images list -o json`), by short name (`etcd`, `coredns`,
/// `pause`, `kube-apiserver`, …) to full name.
pub fn kubeadm_images(json: &str) -> Result<BTreeMap<String, String>, Error> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("kubeadm config images list printed no JSON: {e}")))?;
    let mut out = BTreeMap::new();
    for i in v["images"].as_array().into_iter().flatten() {
        let Some(full) = i.as_str() else { continue };
        let rest = full
            .strip_prefix(IMAGE_REPOSITORY)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "kubeadm names the image {full} outside {IMAGE_REPOSITORY}"
                ))
            })?;
        let short = rest.split(':').next().unwrap_or(rest);
        out.insert(short.to_owned(), full.to_owned());
    }
    for want in ["etcd", "coredns", "pause", "kube-apiserver"] {
        if !out.contains_key(want) {
            return Err(Error::invalid(format!(
                "kubeadm config images list names no {want} image: {json}"
            )));
        }
    }
    Ok(out)
}

/// The module version of an image tag: etcd's `3.6.5-0` is `v3.6.5`, CoreDNS's `v1.12.1` is itself.
pub fn module_version(tag: &str) -> String {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let t = t.split_once('-').map_or(t, |(v, _)| v);
    format!("v{t}")
}

/// Builds the bundle, or finds it in the cache.
pub fn build(args: &BuildArgs, runner: &dyn Runner, out: &mut dyn Write) -> Result<Bundle, Error> {
    check_release(&args.release)?;
    let cache = cache_dir(args.out.as_deref());
    let o = runner
        .capture(&go(&std::env::temp_dir(), &["version"]))
        .map_err(|e| {
            Error::cannot_run(format!(
                "cannot run go ({e}); install Go (scripts/install-deps.sh) or set HSW_GO"
            ))
        })?;
    let go_version = o
        .stdout
        .split_whitespace()
        .nth(2)
        .filter(|v| o.status.success() && v.starts_with("go"))
        .ok_or_else(|| Error::cannot_run(format!("`go version` printed {:?}", o.stdout.trim())))?
        .to_owned();
    let busybox = static_busybox(&args.busybox)?;
    let name = format!(
        "k8s-{}-{}",
        args.release,
        key(&args.release, &go_version, &busybox)
    );
    let dir = cache.join(&name);
    if dir.exists() && !args.force {
        match load_complete(&dir) {
            Ok(manifest) => {
                say(out, format!("cached bundle {} is complete", dir.display()));
                return Ok(Bundle {
                    dir,
                    manifest,
                    built: false,
                });
            }
            Err(why) => say(
                out,
                format!(
                    "cached bundle {} is not complete ({why}): building it again",
                    dir.display()
                ),
            ),
        }
    }
    std::fs::create_dir_all(&cache)
        .map_err(|e| Error::cannot_run(format!("cannot make {}: {e}", cache.display())))?;
    let tmp = cache.join(format!(".build-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .map_err(|e| Error::cannot_run(format!("cannot remove {}: {e}", tmp.display())))?;
    }
    let probe = (args.busybox.as_path(), &busybox[..12]);
    let manifest = match build_into(&args.release, &go_version, probe, &tmp, runner, out) {
        Ok(m) => m,
        Err(e) => {
            // Nothing half-made stays in the cache (Go's own caches keep what was downloaded and compiled).
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::cannot_run(format!("cannot remove {}: {e}", dir.display())))?;
    }
    std::fs::rename(&tmp, &dir)
        .map_err(|e| Error::cannot_run(format!("cannot move {} into place: {e}", tmp.display())))?;
    say(out, format!("bundle {} built", dir.display()));
    Ok(Bundle {
        dir,
        manifest,
        built: true,
    })
}

fn mkdir(p: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(p)
        .map_err(|e| Error::cannot_run(format!("cannot make {}: {e}", p.display())))
}

fn write(p: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(p, text)
        .map_err(|e| Error::cannot_run(format!("cannot write {}: {e}", p.display())))
}

/// Builds every piece into `tmp`; returns the manifest it wrote there.
fn build_into(
    release: &str,
    go_version: &str,
    (busybox, busybox_tag): (&Path, &str),
    tmp: &Path,
    runner: &dyn Runner,
    out: &mut dyn Write,
) -> Result<Manifest, Error> {
    let work = tmp.join("work");
    let bin = tmp.join("bin");
    let build = work.join("out");
    for d in [&work, &bin, &build, &tmp.join("images")] {
        mkdir(d)?;
    }
    let mut seconds = BTreeMap::new();
    let run = |cmd: &Cmd, what: &str, fix: &str| -> Result<(), Error> {
        let s = runner
            .stream(cmd)
            .map_err(|e| Error::cannot_run(format!("cannot run {what} ({e})")))?;
        check(s, what, fix)
    };
    let proxy_fix = "the Go module proxy must serve it (GOPROXY); the error above names the module";

    // Kubernetes.
    let t = Instant::now();
    say(out, format!("Kubernetes v{release}: k8s.io/kubernetes and its staging modules from the Go module proxy"));
    let module = format!("k8s.io/kubernetes@v{release}");
    let o = runner
        .capture(&go(&work, &["mod", "download", "-json", &module]))
        .map_err(|e| Error::cannot_run(format!("cannot run go ({e})")))?;
    let d: Download = serde_json::from_str(&o.stdout).map_err(|e| {
        Error::invalid(format!(
            "go mod download {module} printed no JSON ({e}): {}",
            o.stderr.trim()
        ))
    })?;
    if let Some(err) = d.error.filter(|e| !e.is_empty()) {
        return Err(Error::invalid(format!(
            "go mod download {module}: {err}; {proxy_fix}"
        )));
    }
    let (Some(go_mod), Some(k8s_dir)) = (d.go_mod, d.dir) else {
        return Err(Error::invalid(format!(
            "go mod download {module} did not say where its files are"
        )));
    };
    let text = std::fs::read_to_string(&go_mod)
        .map_err(|e| Error::cannot_run(format!("cannot read {}: {e}", go_mod.display())))?;
    let staging = staging_modules(&text);
    if staging.is_empty() {
        return Err(Error::invalid(format!(
            "{} replaces no staging module: not a k8s.io/kubernetes go.mod",
            go_mod.display()
        )));
    }
    let kdir = work.join("kubernetes");
    mkdir(&kdir)?;
    write(&kdir.join("go.mod"), &kubernetes_go_mod(release, &staging))?;
    let cmds: Vec<String> = NODE_COMMANDS
        .iter()
        .chain(&CONTROL_PLANE_COMMANDS)
        .map(|c| format!("k8s.io/kubernetes/cmd/{c}"))
        .collect();
    let mut get = vec!["get".to_owned()];
    get.extend(cmds.iter().map(|c| format!("{c}@v{release}")));
    let get: Vec<&str> = get.iter().map(String::as_str).collect();
    run(&go(&kdir, &get), "go get (Kubernetes)", proxy_fix)?;
    seconds.insert("kubernetes download".to_owned(), t.elapsed().as_secs());
    let t = Instant::now();
    say(
        out,
        format!(
            "building {} (static, version v{release})",
            NODE_COMMANDS
                .iter()
                .chain(&CONTROL_PLANE_COMMANDS)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let ld = version_ldflags(release);
    let outdir = format!("{}/", build.display());
    let mut b: Vec<&str> = vec!["build", "-trimpath", "-ldflags", &ld, "-o", &outdir];
    b.extend(cmds.iter().map(String::as_str));
    run(
        &go(&kdir, &b),
        "go build (Kubernetes)",
        "the compiler's messages are above",
    )?;
    seconds.insert("kubernetes build".to_owned(), t.elapsed().as_secs());

    // What kubeadm asks for.
    let kubeadm = build.join("kubeadm");
    let o = runner
        .capture(&Cmd::new(&kubeadm).args([
            "config",
            "images",
            "list",
            "--kubernetes-version",
            &format!("v{release}"),
            "--image-repository",
            IMAGE_REPOSITORY,
            "-o",
            "json",
        ]))
        .map_err(|e| Error::cannot_run(format!("cannot run {} ({e})", kubeadm.display())))?;
    if !o.status.success() {
        return Err(Error::invalid(format!(
            "kubeadm config images list failed: {}",
            o.stderr.trim()
        )));
    }
    let images = kubeadm_images(&o.stdout)?;
    let tag = |short: &str| oci::tag_of(&images[short]).unwrap_or_default().to_owned();
    let etcd_version = module_version(&tag("etcd"));
    let coredns_version = module_version(&tag("coredns"));
    let pause_version = tag("pause");

    // etcd and CoreDNS, each its own module.
    for (name, module, version) in [
        ("etcd", "go.etcd.io/etcd/server/v3", &etcd_version),
        ("coredns", "github.com/coredns/coredns", &coredns_version),
    ] {
        let t = Instant::now();
        say(
            out,
            format!("{name} {version}: {module} from the Go module proxy, static"),
        );
        let mdir = work.join(name);
        mkdir(&mdir)?;
        write(&mdir.join("go.mod"), &format!("// Written by hsw-cli bundle build.\nmodule hsw.invalid/bundle/{name}\n\ngo 1.24.0\n"))?;
        run(
            &go(&mdir, &["get", &format!("{module}@{version}")]),
            &format!("go get ({name})"),
            proxy_fix,
        )?;
        let o = build.join(name).display().to_string();
        run(
            &go(
                &mdir,
                &["build", "-trimpath", "-ldflags", "-s -w", "-o", &o, module],
            ),
            &format!("go build ({name})"),
            "the compiler's messages are above",
        )?;
        seconds.insert(format!("{name} build"), t.elapsed().as_secs());
    }

    // pause, from the release's own source.
    let t = Instant::now();
    let pause_c = k8s_dir.join("build/pause/linux/pause.c");
    say(
        out,
        format!("pause {pause_version}: gcc -static {}", pause_c.display()),
    );
    let cc = std::env::var_os("HSW_CC").unwrap_or_else(|| "gcc".into());
    run(
        &Cmd::new(cc)
            .args([
                "-Os",
                "-static",
                "-Wall",
                "-Werror",
                &format!("-DVERSION={pause_version}"),
                "-o",
            ])
            .arg(build.join("pause"))
            .arg(&pause_c),
        "gcc (pause)",
        "install gcc and libc6-dev (static libc)",
    )?;
    seconds.insert("pause build".to_owned(), t.elapsed().as_secs());

    // The node binaries, and the images.
    let t = Instant::now();
    let mut binaries = Vec::new();
    for c in NODE_COMMANDS {
        let to = bin.join(c);
        std::fs::rename(build.join(c), &to)
            .map_err(|e| Error::cannot_run(format!("cannot move {c} into the bundle: {e}")))?;
        binaries.push(entry(tmp, c, &to)?);
    }
    let mut specs: Vec<(String, oci::ImageSpec)> = CONTROL_PLANE_COMMANDS
        .iter()
        .map(|c| {
            (
                c.to_string(),
                oci::ImageSpec {
                    reference: images.get(*c).cloned().unwrap_or_default(),
                    files: vec![(format!("/usr/local/bin/{c}"), build.join(c))],
                    entrypoint: vec![],
                },
            )
        })
        .collect();
    specs.push((
        "etcd".into(),
        oci::ImageSpec {
            reference: images["etcd"].clone(),
            files: vec![("/usr/local/bin/etcd".into(), build.join("etcd"))],
            entrypoint: vec![],
        },
    ));
    specs.push((
        "coredns".into(),
        oci::ImageSpec {
            reference: images["coredns"].clone(),
            files: vec![("/coredns".into(), build.join("coredns"))],
            entrypoint: vec!["/coredns".into()],
        },
    ));
    specs.push((
        "pause".into(),
        oci::ImageSpec {
            reference: images["pause"].clone(),
            files: vec![("/pause".into(), build.join("pause"))],
            entrypoint: vec!["/pause".into()],
        },
    ));
    specs.push((
        "probe".into(),
        oci::ImageSpec {
            reference: format!("{IMAGE_REPOSITORY}/{PROBE_IMAGE}:{busybox_tag}"),
            files: vec![("/bin/busybox".into(), busybox.to_path_buf())],
            entrypoint: vec!["/bin/busybox".into()],
        },
    ));
    let mut image_entries = Vec::new();
    for (short, spec) in &specs {
        if spec.reference.is_empty() {
            return Err(Error::invalid(format!(
                "kubeadm config images list names no {short} image"
            )));
        }
        let to = tmp.join("images").join(format!("{short}.oci.tar"));
        oci::write_archive(spec, &work, &to).map_err(Error::cannot_run)?;
        image_entries.push(entry(tmp, &spec.reference, &to)?);
    }
    seconds.insert("images".to_owned(), t.elapsed().as_secs());
    std::fs::remove_dir_all(&work)
        .map_err(|e| Error::cannot_run(format!("cannot remove {}: {e}", work.display())))?;

    let manifest = Manifest {
        format: FORMAT,
        kubernetes: format!("v{release}"),
        image_repository: IMAGE_REPOSITORY.to_owned(),
        go: go_version.to_owned(),
        components: BTreeMap::from([
            ("kubernetes".to_owned(), format!("v{release}")),
            ("etcd".to_owned(), etcd_version),
            ("coredns".to_owned(), coredns_version),
            ("pause".to_owned(), pause_version),
            ("busybox".to_owned(), busybox_tag.to_owned()),
        ]),
        binaries,
        images: image_entries,
        build_seconds: seconds,
    };
    let mut text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    text.push('\n');
    write(&tmp.join("bundle.json"), &text)?;
    Ok(manifest)
}

/// The sha256 of `path` when it is a static ELF executable (no program interpreter): the probe image has
/// nothing else in it, so a dynamically linked busybox (Debian's `busybox`, not `busybox-static`) could not run.
fn static_busybox(path: &Path) -> Result<String, Error> {
    let fix = "install Debian's busybox-static (scripts/install-deps.sh) or name a static busybox with --busybox";
    let bytes = std::fs::read(path)
        .map_err(|e| Error::cannot_run(format!("cannot read {} ({e}): {fix}", path.display())))?;
    match elf_interpreter(&bytes) {
        Some(false) => Ok(format!("{:x}", Sha256::digest(&bytes))),
        Some(true) => Err(Error::cannot_run(format!(
            "{} is dynamically linked: {fix}",
            path.display()
        ))),
        None => Err(Error::cannot_run(format!(
            "{} is not a 64-bit little-endian ELF executable: {fix}",
            path.display()
        ))),
    }
}

/// Whether a 64-bit little-endian ELF file has a program interpreter (`PT_INTERP`); `None`: not such a file.
fn elf_interpreter(b: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if b.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64::from_le_bytes(b.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let (size, count) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    let mut interp = false;
    for i in 0..count {
        let at = phoff.checked_add(i.checked_mul(size)?)?;
        interp |= u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) == PT_INTERP;
    }
    Some(interp)
}

/// The manifest entry of a file of the bundle.
fn entry(root: &Path, name: &str, path: &Path) -> Result<FileEntry, Error> {
    let (sha256, size) = file_sha256(path)
        .map_err(|e| Error::cannot_run(format!("cannot read {}: {e}", path.display())))?;
    Ok(FileEntry {
        name: name.to_owned(),
        path: path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string(),
        size,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;

    const K8S_GO_MOD: &str = "module k8s.io/kubernetes\n\ngo 1.24.0\n\nrequire (\n\tk8s.io/api v0.0.0\n)\n\nreplace (\n\
        \tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\
        \tgithub.com/x/y => github.com/x/y v1.0.0\n)\n";

    #[test]
    fn the_go_mod_pins_the_staging_modules_to_the_release() {
        let staging = staging_modules(K8S_GO_MOD);
        assert_eq!(staging, ["k8s.io/api", "k8s.io/client-go"]);
        assert_eq!(
            staging_modules("replace k8s.io/api => ./staging/src/k8s.io/api\n"),
            ["k8s.io/api"]
        );
        let m = kubernetes_go_mod("1.34.4", &staging);
        assert!(m.contains("require k8s.io/kubernetes v1.34.4\n"), "{m}");
        assert!(m.contains("\tk8s.io/api => k8s.io/api v0.34.4\n"), "{m}");
        assert!(
            m.contains("\tk8s.io/client-go => k8s.io/client-go v0.34.4\n"),
            "{m}"
        );
        let ld = version_ldflags("1.34.4");
        for p in [
            "k8s.io/component-base/version",
            "k8s.io/client-go/pkg/version",
        ] {
            assert!(
                ld.contains(&format!(
                    "-X {p}.gitVersion=v1.34.4 -X {p}.gitMajor=1 -X {p}.gitMinor=34 "
                )),
                "{ld}"
            );
        }
    }

    #[test]
    fn releases_versions_and_image_lists_are_read_strictly() {
        assert_eq!(check_release("1.34.4").unwrap(), (1, 34, 4));
        for bad in [
            "",
            "1.34",
            "v1.34.4",
            "1.34.4-rc.0",
            "2.0.0",
            "1.34.4/..",
            "1..4",
            "1.34.99999",
        ] {
            let e = check_release(bad).unwrap_err();
            assert!(
                e.to_string()
                    .contains("is not a Kubernetes release: give X.Y.Z"),
                "{bad}: {e}"
            );
        }
        assert_eq!(module_version("3.6.5-0"), "v3.6.5");
        assert_eq!(module_version("v1.12.1"), "v1.12.1");
        let list = r#"{"kind":"Images","images":["registry.hsw.invalid/kube-apiserver:v1.34.4",
            "registry.hsw.invalid/coredns:v1.12.1","registry.hsw.invalid/pause:3.10.1","registry.hsw.invalid/etcd:3.6.5-0"]}"#;
        let images = kubeadm_images(list).unwrap();
        assert_eq!(images["etcd"], "registry.hsw.invalid/etcd:3.6.5-0");
        assert_eq!(images.len(), 4);
        let e = kubeadm_images(r#"{"images":["registry.k8s.io/pause:3.10.1"]}"#).unwrap_err();
        assert!(
            e.to_string().contains("outside registry.hsw.invalid"),
            "{e}"
        );
        let e = kubeadm_images(r#"{"images":[]}"#).unwrap_err();
        assert!(e.to_string().contains("names no etcd image"), "{e}");
        assert!(kubeadm_images("nope").is_err());
    }

    /// A fake Go module proxy and toolchain: `go mod download` points at a module tree with a go.mod and
    /// pause.c, `go build` and gcc write their `-o` files.
    fn fake_toolchain(root: &Path) -> FakeRunner {
        fake_toolchain_failing(root, &[])
    }

    /// [`fake_toolchain`], where the commands with every word of `fail` (when not empty) exit 2.
    fn fake_toolchain_failing(root: &Path, fail: &[&str]) -> FakeRunner {
        let k8s = root.join("mod/k8s.io/kubernetes@v1.34.4");
        std::fs::create_dir_all(k8s.join("build/pause/linux")).unwrap();
        std::fs::write(k8s.join("go.mod"), K8S_GO_MOD).unwrap();
        std::fs::write(k8s.join("build/pause/linux/pause.c"), "int main(){}\n").unwrap();
        let download = serde_json::json!({
            "Path": "k8s.io/kubernetes", "Version": "v1.34.4",
            "GoMod": k8s.join("go.mod"), "Dir": k8s,
        });
        let runner = FakeRunner::new();
        if !fail.is_empty() {
            runner.on(fail, 2, "");
        }
        runner
            .on(&["version"], 0, "go version go1.26.8 linux/amd64\n")
            .on(&["mod", "download", "-json"], 0, &download.to_string())
            .on(
                &["config", "images", "list"],
                0,
                r#"{"kind":"Images","apiVersion":"output.kubeadm.k8s.io/v1alpha3","images":[
                    "registry.hsw.invalid/kube-apiserver:v1.34.4","registry.hsw.invalid/kube-controller-manager:v1.34.4",
                    "registry.hsw.invalid/kube-scheduler:v1.34.4","registry.hsw.invalid/kube-proxy:v1.34.4",
                    "registry.hsw.invalid/coredns:v1.12.1","registry.hsw.invalid/pause:3.10.1",
                    "registry.hsw.invalid/etcd:3.6.5-0"]}"#,
            );
        let write_outputs = |cmd: &Cmd| {
            let args: Vec<String> = cmd.argv();
            let Some(i) = args.iter().position(|a| a == "-o") else {
                return;
            };
            let o = &args[i + 1];
            if let Some(dir) = o.strip_suffix('/') {
                for a in &args[i + 2..] {
                    let name = a.rsplit('/').next().unwrap();
                    std::fs::write(Path::new(dir).join(name), format!("binary {name}")).unwrap();
                }
            } else {
                std::fs::write(o, format!("binary {o}")).unwrap();
            }
        };
        runner.effect(&["build", "-trimpath"], write_outputs);
        runner.effect(&["-static"], write_outputs);
        runner
    }

    /// A 64-bit ELF file with one program header of type `p_type` (1: PT_LOAD, 3: PT_INTERP).
    fn elf(p_type: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&p_type.to_le_bytes());
        b
    }

    /// Build arguments with a cache in `out` and a static busybox beside it.
    fn args(out: &Path) -> BuildArgs {
        let busybox = out.with_file_name("busybox");
        std::fs::write(&busybox, elf(1)).unwrap();
        BuildArgs {
            release: DEFAULT_RELEASE.into(),
            out: Some(out.to_path_buf()),
            force: false,
            busybox,
        }
    }

    #[test]
    fn only_a_static_busybox_makes_the_probe_image() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("busybox");
        std::fs::write(&p, elf(1)).unwrap();
        assert_eq!(static_busybox(&p).unwrap().len(), 64);
        std::fs::write(&p, elf(3)).unwrap();
        let e = static_busybox(&p).unwrap_err().to_string();
        assert!(
            e.contains("is dynamically linked: install Debian's busybox-static"),
            "{e}"
        );
        for bad in [&b"#!/bin/sh\n"[..], &elf(1)[..66], b""] {
            std::fs::write(&p, bad).unwrap();
            let e = static_busybox(&p).unwrap_err().to_string();
            assert!(
                e.contains("is not a 64-bit little-endian ELF executable"),
                "{e}"
            );
        }
        let e = static_busybox(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read") && e.contains("--busybox"), "{e}");
    }

    #[test]
    fn a_bundle_is_built_once_and_then_taken_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let runner = fake_toolchain(dir.path());
        let mut out = Vec::new();
        let b = build(&args(&cache), &runner, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert!(b.built);
        assert!(b
            .dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("k8s-1.34.4-"));
        let m = &b.manifest;
        assert_eq!(m.kubernetes, "v1.34.4");
        assert_eq!(m.go, "go1.26.8");
        assert_eq!(m.components["etcd"], "v3.6.5");
        assert_eq!(m.components["coredns"], "v1.12.1");
        assert_eq!(m.components["pause"], "3.10.1");
        let bins: Vec<&str> = m.binaries.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            bins,
            [
                "bin/kubelet",
                "bin/kubeadm",
                "bin/kubectl",
                "bin/kube-proxy"
            ]
        );
        let images: Vec<&str> = m.images.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            images,
            [
                "registry.hsw.invalid/kube-apiserver:v1.34.4",
                "registry.hsw.invalid/kube-controller-manager:v1.34.4",
                "registry.hsw.invalid/kube-scheduler:v1.34.4",
                "registry.hsw.invalid/etcd:3.6.5-0",
                "registry.hsw.invalid/coredns:v1.12.1",
                "registry.hsw.invalid/pause:3.10.1",
                &format!("registry.hsw.invalid/hsw/probe:{}", m.components["busybox"]),
            ]
        );
        assert_eq!(m.components["busybox"].len(), 12);
        assert_eq!(load_complete(&b.dir).unwrap(), *m);
        assert!(!b.dir.join("work").exists(), "the work tree is removed");
        assert!(!cache
            .join(format!(
                ".build-{}",
                b.dir.file_name().unwrap().to_string_lossy()
            ))
            .exists());
        // The Kubernetes build: one go build of the seven commands with the version in.
        let argvs = runner.argvs();
        let k8s_build = argvs
            .iter()
            .find(|a| {
                a.iter()
                    .any(|w| w == "k8s.io/kubernetes/cmd/kube-apiserver")
                    && a.contains(&"build".to_owned())
            })
            .unwrap();
        assert!(k8s_build
            .iter()
            .any(|w| w.contains("-X k8s.io/component-base/version.gitVersion=v1.34.4")));
        assert!(argvs
            .iter()
            .any(|a| a.ends_with(&["get".into(), "go.etcd.io/etcd/server/v3@v3.6.5".into()])));
        assert!(argvs
            .iter()
            .any(|a| a.ends_with(&["get".into(), "github.com/coredns/coredns@v1.12.1".into()])));
        assert!(argvs
            .iter()
            .any(|a| a.contains(&"-DVERSION=3.10.1".to_owned())));
        let calls = runner.calls();
        let get = calls
            .iter()
            .find(|c| c.argv().get(1).is_some_and(|w| w == "get"))
            .unwrap();
        assert_eq!(
            get.env_value("CGO_ENABLED"),
            Some(std::ffi::OsStr::new("0"))
        );
        assert_eq!(get.env_value("GOWORK"), Some(std::ffi::OsStr::new("off")));
        assert!(String::from_utf8_lossy(&out).contains("bundle "));

        // Again: from the cache, nothing built.
        let again = fake_toolchain(dir.path());
        let b2 = build(&args(&cache), &again, &mut Vec::new()).unwrap();
        assert!(!b2.built);
        assert_eq!(b2.dir, b.dir);
        assert_eq!(
            again.argvs().len(),
            1,
            "only `go version`: {:?}",
            again.argvs()
        );

        // A file that changed makes it build again.
        std::fs::write(b.dir.join("bin/kubelet"), "tampered").unwrap();
        assert!(load_complete(&b.dir)
            .unwrap_err()
            .contains("bin/kubelet is not what bundle.json says"));
        let third = fake_toolchain(dir.path());
        let mut out = Vec::new();
        let b3 = build(&args(&cache), &third, &mut out).unwrap();
        assert!(b3.built);
        assert!(String::from_utf8_lossy(&out)
            .contains("is not complete (bin/kubelet is not what bundle.json says"));
        assert!(load_complete(&b3.dir).is_ok());

        // A manifest that names a file outside bin/ and images/ is refused before anything is read.
        let text = std::fs::read_to_string(b3.dir.join("bundle.json")).unwrap();
        for bad in [
            "../../etc/shadow",
            "bin/../x",
            "images/.hidden",
            "/etc/passwd",
            "kubelet",
        ] {
            std::fs::write(
                b3.dir.join("bundle.json"),
                text.replacen("\"bin/kubelet\"", &format!("{bad:?}"), 1),
            )
            .unwrap();
            let e = load_complete(&b3.dir).unwrap_err();
            assert!(e.contains("not a bin/NAME or images/NAME"), "{bad}: {e}");
        }
    }

    #[test]
    fn what_the_proxy_or_the_compiler_refuses_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let runner = FakeRunner::new();
        runner
            .on(&["version"], 0, "go version go1.26.8 linux/amd64\n")
            .on(
                &["mod", "download", "-json"],
                1,
                r#"{"Path":"k8s.io/kubernetes","Version":"v1.34.4","Error":"not found: 410 Gone"}"#,
            );
        let e = build(&args(dir.path()), &runner, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().starts_with("go mod download k8s.io/kubernetes@v1.34.4: not found: 410 Gone; the Go module proxy"), "{e}");

        // The compiler fails: the step is named, and nothing is left in the cache.
        let runner = fake_toolchain_failing(dir.path(), &["build", "-trimpath"]);
        let e = build(&args(&dir.path().join("c")), &runner, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("go build (Kubernetes) failed (exit status: 2; its output is above)"),
            "{e}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("c")).unwrap().collect();
        assert!(left.is_empty(), "nothing half-made is left: {left:?}");
        let runner = fake_toolchain_failing(dir.path(), &["-static"]);
        let e = build(&args(&dir.path().join("c")), &runner, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string().contains("gcc (pause) failed") && e.to_string().contains("libc6-dev"),
            "{e}"
        );

        let e = build(
            &BuildArgs {
                release: "1.34".into(),
                out: Some(dir.path().into()),
                force: false,
                busybox: DEFAULT_BUSYBOX.into(),
            },
            &FakeRunner::new(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not a Kubernetes release"), "{e}");
        let none = FakeRunner::new();
        none.on_full(&["version"], None, "", "", None);
        let e = build(&args(dir.path()), &none, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot run go (entity not found); install Go"),
            "{e}"
        );
    }
}
