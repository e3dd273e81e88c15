//! Step 2: the guest images, one per cluster the config defines, each built (or found in the cache) by
//! `scripts/build-image.sh --role ROLE` from its package list; and placing them in the provider's pool.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use hsw_core::config::ClusterConfig;

use super::{say, step_header, Up, UP_STEPS};
use crate::error::Error;
use crate::image::{self, BuildArgs, Image, ImageRole};

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
    for role in image_roles(&up.session.config) {
        let img = image::build(
            up.ctx.runner,
            &up.ctx.repo,
            &BuildArgs {
                role,
                out: up.args.image_dir.clone(),
                force: false,
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

/// Hard-links (or copies) the image into `<pool>/images/<key>/`: the provider takes only files inside its
/// pool directory. A new image has a new key, so its VMs are replaced rather than rebased under them.
pub fn place_image(img: &Image, pool: &Path) -> Result<Image, String> {
    let key = img
        .base
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "current".into(), |k| k.to_string_lossy().into_owned());
    let dir = pool.join("images").join(&key);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let place = |src: &Path, name: &str| -> Result<PathBuf, String> {
        let dest = dir.join(name);
        let same = match (std::fs::metadata(src), std::fs::metadata(&dest)) {
            (Ok(a), Ok(b)) => a.len() == b.len(),
            _ => false,
        };
        if !same {
            let _ = std::fs::remove_file(&dest);
            if std::fs::hard_link(src, &dest).is_err() {
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::copy(src, &tmp)
                    .and_then(|_| std::fs::rename(&tmp, &dest))
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&tmp);
                        format!("cannot copy {} to {}: {e}", src.display(), dest.display())
                    })?;
            }
        }
        Ok(dest)
    };
    Ok(Image {
        base: place(&img.base, "base.qcow2")?,
        kernel: place(&img.kernel, "vmlinuz")?,
        initrd: place(&img.initrd, "initrd.img")?,
        manifest: place(&img.manifest, "manifest.json")?,
    })
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
        let (r, t) = f.with_up(
            &runner,
            |a| a.image_dir = Some(cache.clone()),
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
                vec!["bash", &script, "--role", "cloud", "--out", &c],
            ]
        );
        assert!(
            t.contains("==> [2/11] guest images (one per cluster)"),
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

    #[test]
    fn images_are_linked_into_the_pool_under_their_key() {
        let f = Fixture::new(None);
        let img = fixture::built(&f.dir.path().join("cache"), "abc");
        let pool = f.dir.path().join("pool");
        let placed = place_image(&img, &pool).unwrap();
        assert_eq!(placed.base, pool.join("images/abc/base.qcow2"));
        assert_eq!(std::fs::read_to_string(&placed.kernel).unwrap(), "vmlinuz");
        // Again: nothing changes.
        assert_eq!(place_image(&img, &pool).unwrap(), placed);
    }
}
