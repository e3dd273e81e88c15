//! Step 2: the guest images, one per cluster the config defines, each built (or found in the cache) by
//! `scripts/build-image.sh --role ROLE` from its package list; and placing them in the provider's pool.
//! With `kubernetes_config.source: bundle` (the default), the cloud image carries hsw's offline Kubernetes
//! bundle (`hsw-cli bundle build`, cached; `--bundle`), whether or not this `up` configures Kubernetes: the
//! image, and so its VMs, stay the same between `up --hpc-only` and `up`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hsw_core::config::model::KubernetesSource;
use hsw_core::config::ClusterConfig;

use super::{say, step_header, Up, UP_STEPS};
use crate::bundle;
use crate::error::Error;
use crate::image::{self, BuildArgs, Image, ImageRole};
use crate::provider_mirror::sha256_file;

/// The images `up` needs: one per cluster the configuration defines, each built from its own package list.
pub fn image_roles(cfg: &ClusterConfig) -> Vec<ImageRole> {
    let mut roles = Vec::new();
    if cfg.clusters.hpc.is_some() {
        roles.push(ImageRole::Hpc);
    }
    if cfg.clusters.cloud.is_some() {
        roles.push(ImageRole::Cloud);
    }
    roles
}

/// Step 2: builds (or finds) the image of every cluster.
pub fn build(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    step_header(out, n, UP_STEPS, "guest images (one per cluster)");
    let mut images = BTreeMap::new();
    let config = &up.session.config;
    for role in image_roles(config) {
        let bundle = match (role, config.kubernetes_source()) {
            (ImageRole::Cloud, Some(KubernetesSource::Bundle)) => Some(kubernetes_bundle(up, out)?),
            _ => None,
        };
        let img = image::build(
            up.ctx.runner,
            &up.ctx.repo,
            &BuildArgs {
                role,
                out: up.args.image_dir.clone(),
                force: false,
                bundle,
            },
            out,
        )?;
        say(
            out,
            format!(
                "{} image {} (kernel, initrd beside it)",
                role.as_str(),
                img.base.display()
            ),
        );
        images.insert(role, img);
    }
    up.images = images;
    Ok(())
}

/// The offline Kubernetes bundle for the cloud image: `--bundle`'s (checked complete), else from the cache or
/// built (once per machine).
fn kubernetes_bundle(up: &Up<'_>, out: &mut dyn Write) -> Result<PathBuf, Error> {
    if let Some(dir) = &up.args.bundle {
        let m = bundle::load_complete(dir).map_err(|why| {
            Error::invalid(format!(
                "--bundle {} is not a complete bundle ({why}); make it with `hsw-cli bundle build` and copy the \
                 whole directory",
                dir.display()
            ))
        })?;
        say(
            out,
            format!(
                "Kubernetes bundle {} ({}, --bundle)",
                dir.display(),
                m.kubernetes
            ),
        );
        return Ok(dir.clone());
    }
    say(
        out,
        "Kubernetes bundle (kubernetes_config.source: bundle): hsw-cli bundle build (cached; a first build \
         compiles Kubernetes from source modules, about 10-15 minutes on 2 cores)",
    );
    let _ = out.flush();
    let b = bundle::build(
        &bundle::BuildArgs {
            release: bundle::DEFAULT_RELEASE.to_owned(),
            out: None,
            force: false,
            busybox: bundle::DEFAULT_BUSYBOX.into(),
        },
        up.ctx.runner,
        out,
    )?;
    say(
        out,
        format!(
            "Kubernetes bundle {} ({}{})",
            b.dir.display(),
            b.manifest.kubernetes,
            if b.built {
                ", built now"
            } else {
                ", from the cache"
            }
        ),
    );
    Ok(b.dir)
}

/// Places the image in `<pool>/images/<key>/` (the provider takes only files inside its pool): each file is
/// hard-linked to the cache's (copied where a link cannot be made). A new image has a new key, so its VMs are
/// replaced rather than rebased under them.
///
/// Placed files are trusted by content, not size: one is kept when it is the cache's own file (the same inode,
/// whose sha256 `scripts/build-image.sh` checked against the manifest just before) or has the sha256 the
/// manifest records; otherwise it is replaced, with a line on `out` saying why. QEMU runs unprivileged and
/// reads these as backing files, and libvirt's DAC driver chowns backing files to QEMU's user while a VM runs:
/// so each file is made 0644 and given back to the owner of the cache directory (root) when it is not theirs.
pub fn place_image(img: &Image, pool: &Path, out: &mut dyn Write) -> Result<Image, String> {
    let key = img
        .base
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "current".into(), |k| k.to_string_lossy().into_owned());
    let owner = img
        .base
        .parent()
        .and_then(|d| std::fs::metadata(d).ok())
        .map(|m| (m.uid(), m.gid()));
    let sums = manifest_sha256(&img.manifest)?;
    let images = pool.join("images");
    let dir = images.join(&key);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for d in [&images, &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot make {} 0755: {e}", d.display()))?;
    }
    let mut place = |src: &Path, name: &str| -> Result<PathBuf, String> {
        let dest = dir.join(name);
        let why = match placed_differs(src, &dest, sums.get(name).map(String::as_str)) {
            Ok(None) => None,
            Ok(Some(why)) => Some(why),
            Err(e) => return Err(format!("cannot check {}: {e}", dest.display())),
        };
        if let Some(why) = why {
            if dest.exists() {
                say(out, format!("re-placing {}: {why}", dest.display()));
            }
            replace(src, &dest)?;
        }
        settle(&dest, owner)?;
        Ok(dest)
    };
    Ok(Image {
        base: place(&img.base, "base.qcow2")?,
        kernel: place(&img.kernel, "vmlinuz")?,
        initrd: place(&img.initrd, "initrd.img")?,
        manifest: place(&img.manifest, "manifest.json")?,
    })
}

/// `name → sha256` of the files the manifest lists.
fn manifest_sha256(manifest: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read the image manifest {}: {e}", manifest.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "the image manifest {} is not JSON ({e}); rebuild the image with `hsw-cli image build --force`",
            manifest.display()
        )
    })?;
    Ok(v["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f["name"].as_str()?.to_owned(),
                f["sha256"].as_str()?.to_owned(),
            ))
        })
        .collect())
}

/// Why the file at `dest` is not the cache's `src` (`None`: it is). Without a recorded sha256 (the manifest),
/// the bytes are compared.
fn placed_differs(
    src: &Path,
    dest: &Path,
    sha256: Option<&str>,
) -> std::io::Result<Option<String>> {
    let d = match std::fs::symlink_metadata(dest) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some("missing".into())),
        Err(e) => return Err(e),
    };
    if !d.file_type().is_file() {
        return Ok(Some("not a regular file".into()));
    }
    let s = std::fs::metadata(src)?;
    if (s.dev(), s.ino()) == (d.dev(), d.ino()) {
        return Ok(None);
    }
    Ok(match sha256 {
        Some(want) => {
            let have = sha256_file(dest)?;
            (have != want).then(|| format!("its sha256 is {have}, the manifest says {want}"))
        }
        None => (std::fs::read(src)? != std::fs::read(dest)?).then(|| "its content differs".into()),
    })
}

/// Puts the cache's `src` at `dest`: a hard link, or a copy renamed into place.
fn replace(src: &Path, dest: &Path) -> Result<(), String> {
    match std::fs::remove_file(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", dest.display())),
    }
    if std::fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    hsw_core::fsx::copy_atomic(src, dest, 0o644)
        .map_err(|e| format!("cannot copy {} to {}: {e}", src.display(), dest.display()))
}

/// Makes a placed file 0644 and, when it is not, the cache directory owner's.
fn settle(dest: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    let m = std::fs::metadata(dest).map_err(|e| format!("cannot read {}: {e}", dest.display()))?;
    if let Some((uid, gid)) = owner {
        if (m.uid(), m.gid()) != (uid, gid) {
            std::os::unix::fs::chown(dest, Some(uid), Some(gid)).map_err(|e| {
                format!(
                    "{} belongs to uid {} (libvirt gives backing files to QEMU's user while a VM runs) and cannot be given back to uid {uid}: {e}",
                    dest.display(),
                    m.uid()
                )
            })?;
        }
    }
    if m.permissions().mode() & 0o7777 != 0o644 {
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("cannot make {} 0644: {e}", dest.display()))?;
    }
    forget_libvirt_labels(dest).map_err(|e| {
        format!(
            "cannot remove libvirt's stale owner records from {}: {e}",
            dest.display()
        )
    })?;
    Ok(())
}

/// The prefix of the extended attributes in which libvirt's DAC driver records a file's owner before it chowns
/// the file to QEMU's user, and how many running VMs use it (`remember_owner`).
const LIBVIRT_LABEL_XATTR: &str = "trusted.libvirt.security.";

/// Removes libvirt's `remember_owner` records from `path` (not following a link) and says how many it removed.
/// They outlive a libvirtd that dies while its VMs run (a sandbox killed mid-run): the file is then root's
/// again but its record counts users that no longer exist, and libvirt refuses to start the next VM on it
/// ("Setting different DAC user or group on ... which is already in use"). Called only on files just given
/// back to their owner; without a record libvirt gives the file back to root when the VM stops, which is what
/// the record said. Only root sees `trusted.*` attributes: for others there is nothing to remove.
pub(crate) fn forget_libvirt_labels(path: &Path) -> std::io::Result<usize> {
    let mut names: Vec<u8> = Vec::new();
    // The list can grow between the size query and the read; a few tries, then the error.
    for _ in 0..4 {
        let want = rustix::fs::llistxattr_query(path)?;
        names.resize(want, 0);
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut removed = 0;
    for name in names
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(LIBVIRT_LABEL_XATTR.as_bytes()))
    {
        match rustix::fs::lremovexattr(path, name) {
            Ok(()) => removed += 1,
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::{fixture, text, Fixture};

    #[test]
    fn every_cluster_gets_the_image_of_its_role() {
        let f = Fixture::new(Some("sb"));
        let cache = f.dir.path().join("cache");
        let hpc = fixture::built(&cache, "khpc");
        let cloud = fixture::built(&cache, "kcloud");
        let runner = FakeRunner::new();
        runner
            .on(&["--role", "hpc"], 0, &fixture::built_answer(&hpc))
            .on(&["--role", "cloud"], 0, &fixture::built_answer(&cloud));
        let bundle = fixture::bundle(f.dir.path());
        let (r, t) = f.with_up(
            &runner,
            |a| {
                a.image_dir = Some(cache.clone());
                a.bundle = Some(bundle.clone());
            },
            |up| {
                let mut out = Vec::new();
                let r = build(up, 2, &mut out);
                assert_eq!(up.images.get(&ImageRole::Hpc), Some(&hpc));
                assert_eq!(up.images.get(&ImageRole::Cloud), Some(&cloud));
                (r, text(&out))
            },
        );
        r.unwrap();
        let script = Fixture::repo()
            .join("scripts/build-image.sh")
            .display()
            .to_string();
        let c = cache.display().to_string();
        assert_eq!(
            runner.argvs(),
            [
                vec!["bash", &script, "--role", "hpc", "--out", &c],
                vec![
                    "bash",
                    &script,
                    "--role",
                    "cloud",
                    "--out",
                    &c,
                    "--bundle",
                    &bundle.display().to_string()
                ],
            ]
        );
        assert!(
            t.contains(&format!(
                "hsw: Kubernetes bundle {} (v1.34.4, --bundle)",
                bundle.display()
            )),
            "{t}"
        );
        // A --bundle that is not one stops the step, naming it.
        std::fs::write(bundle.join("bundle.json"), "{}").unwrap();
        let r = f.with_up(
            &runner,
            |a| a.bundle = Some(bundle.clone()),
            |up| build(up, 2, &mut Vec::new()),
        );
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("is not a complete bundle (bundle.json does not read"),
            "{e}"
        );
        assert!(
            t.contains("==> [2/13] guest images (one per cluster)"),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "hsw: cloud image {} (kernel, initrd beside it)",
                cloud.base.display()
            )),
            "{t}"
        );
    }

    #[test]
    fn a_failed_build_is_invalid_and_names_the_needs() {
        let f = Fixture::new(Some("sb"));
        let runner = FakeRunner::new();
        runner.on(&["--role", "hpc"], 1, "");
        let e = f.run_step(&runner, build, 2, |_| {}).0.unwrap_err();
        assert_eq!(e.code(), crate::exit::INVALID);
        assert!(
            e.to_string()
                .starts_with("scripts/build-image.sh failed (exit status: 1)"),
            "{e}"
        );
        assert_eq!(runner.calls().len(), 1);
    }

    fn place(img: &Image, pool: &Path) -> (Image, String) {
        let mut out = Vec::new();
        let placed = place_image(img, pool, &mut out).unwrap();
        (placed, text(&out))
    }

    #[test]
    fn images_are_linked_into_the_pool_under_their_key() {
        let f = Fixture::new(None);
        let img = fixture::built(&f.dir.path().join("cache"), "abc");
        let pool = f.dir.path().join("pool");
        let (placed, t) = place(&img, &pool);
        assert_eq!(placed.base, pool.join("images/abc/base.qcow2"));
        assert_eq!(std::fs::read_to_string(&placed.kernel).unwrap(), "vmlinuz");
        assert_eq!(t, "", "a first placement is silent");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&placed.base), 0o644);
        assert_eq!(mode(&pool.join("images/abc")), 0o755);
        // Again: nothing changes.
        assert_eq!(place(&img, &pool), (placed, String::new()));
    }

    #[test]
    fn a_placed_file_of_the_same_size_but_other_content_is_replaced() {
        let f = Fixture::new(None);
        let img = fixture::built(&f.dir.path().join("cache"), "abc");
        let pool = f.dir.path().join("pool");
        let (placed, _) = place(&img, &pool);
        // A copy (not the cache's inode) whose bytes were changed in place, keeping its length.
        std::fs::remove_file(&placed.base).unwrap();
        std::fs::write(&placed.base, "BASE.QCOW2").unwrap();
        std::fs::set_permissions(&placed.base, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (again, t) = place(&img, &pool);
        assert_eq!(again, placed);
        assert_eq!(std::fs::read_to_string(&placed.base).unwrap(), "base.qcow2");
        assert!(
            t.contains(&format!(
                "hsw: re-placing {}: its sha256 is ",
                placed.base.display()
            )) && t.contains(", the manifest says "),
            "{t}"
        );
        assert_eq!(
            std::fs::metadata(&placed.base)
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o644
        );
        // A copy with the right content is kept as it is.
        std::fs::remove_file(&placed.kernel).unwrap();
        std::fs::write(&placed.kernel, "vmlinuz").unwrap();
        let (_, t) = place(&img, &pool);
        assert_eq!(t, "");
    }

    #[test]
    fn a_manifest_that_is_not_json_is_an_error_naming_the_fix() {
        let f = Fixture::new(None);
        let img = fixture::built(&f.dir.path().join("cache"), "abc");
        std::fs::write(&img.manifest, "size only").unwrap();
        let e = place_image(&img, &f.dir.path().join("pool"), &mut Vec::new()).unwrap_err();
        assert!(
            e.contains("is not JSON") && e.contains("image build --force"),
            "{e}"
        );
    }

    #[test]
    fn stale_libvirt_owner_records_are_removed_and_other_attributes_kept() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("vmlinuz");
        std::fs::write(&f, "k").unwrap();
        let set = |name: &str, v: &[u8]| {
            rustix::fs::setxattr(&f, name, v, rustix::fs::XattrFlags::empty())
        };
        // Not every filesystem takes user.* attributes (tmpfs before 6.6); root can always set trusted.*.
        let user = set("user.keep", b"1").is_ok();
        let root = set("trusted.libvirt.security.ref_dac", b"3").is_ok();
        if root {
            set("trusted.libvirt.security.dac", b"+0:+0").unwrap();
            set("trusted.other", b"x").unwrap();
        }
        let removed = forget_libvirt_labels(&f).unwrap();
        let mut left = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(&f, &mut left[..]).unwrap();
        let left: Vec<&[u8]> = left[..n]
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .collect();
        assert_eq!(removed, if root { 2 } else { 0 });
        assert!(
            !left
                .iter()
                .any(|n| n.starts_with(LIBVIRT_LABEL_XATTR.as_bytes())),
            "{left:?}"
        );
        assert_eq!(left.contains(&&b"user.keep"[..]), user, "{left:?}");
        assert_eq!(left.contains(&&b"trusted.other"[..]), root, "{left:?}");
        // A second pass finds nothing; a file without attributes is fine.
        assert_eq!(forget_libvirt_labels(&f).unwrap(), 0);
    }
}
