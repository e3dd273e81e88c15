//! OCI image archives made from local files, with no registry and no daemon: one uncompressed layer holding
//! the given files (owned by root, mtime 0, in path order, with their parent directories), an image config
//! (`amd64`/`linux`, entrypoint, `PATH`), a manifest, and an index whose manifest carries the image's full name
//! (`io.containerd.image.name`, which `ctr images import` names the image by) and its tag
//! (`org.opencontainers.image.ref.name`), packed as a tar of the OCI image layout. The same inputs give the
//! same bytes, so the archives' sha256 in the bundle manifest is stable.
//!
//! Uncompressed on purpose: the TCG guests unpack them, and gzip would cost them more than the disk.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

/// The media types of the OCI image spec 1.1.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// The index's media type.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// One image to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// The full name: `registry/path:tag`.
    pub reference: String,
    /// The files: (path inside the image, absolute, e.g. `/usr/local/bin/etcd`; the file on this machine).
    pub files: Vec<(String, PathBuf)>,
    /// The entrypoint (empty: none; kubeadm's static pods give their command).
    pub entrypoint: Vec<String>,
}

/// `sha256:<hex>` of bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

/// The tag of a reference (`…:tag`, after the last `/`).
pub fn tag_of(reference: &str) -> Option<&str> {
    let last = reference.rsplit('/').next()?;
    last.split_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.is_empty())
}

/// A tar header for an entry owned by root, mtime 0.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the layer to `to`: the files (mode 0755) with their parent directories (0755), in path order;
/// returns its digest and size. Streams: memory stays small whatever the files' sizes.
fn write_layer(files: &[(String, PathBuf)], to: &Path) -> Result<(String, u64), String> {
    let mut dirs = BTreeSet::new();
    let mut entries = Vec::new();
    for (inside, local) in files {
        let rel = inside
            .strip_prefix('/')
            .filter(|r| {
                !r.is_empty() && !r.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            })
            .ok_or_else(|| format!("`{inside}` is not a plain absolute path inside the image"))?;
        let mut p = Path::new(rel).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(format!("{}/", d.display()));
            p = d.parent();
        }
        entries.push((rel.to_owned(), local));
    }
    entries.sort();
    let file =
        std::fs::File::create(to).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    let mut b = tar::Builder::new(Hashing {
        inner: std::io::BufWriter::new(file),
        hash: Sha256::new(),
        len: 0,
    });
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", to.display());
    for d in &dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, d, std::io::empty()).map_err(fail)?;
    }
    for (rel, local) in entries {
        let f = std::fs::File::open(local)
            .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
        let size = f
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", local.display()))?
            .len();
        let mut h = header(tar::EntryType::Regular, 0o755, size);
        b.append_data(&mut h, &rel, f.take(size))
            .map_err(|e| format!("cannot add {} to the layer: {e}", local.display()))?;
    }
    let mut w = b.into_inner().map_err(fail)?;
    w.flush().map_err(fail)?;
    Ok((format!("sha256:{:x}", w.hash.finalize()), w.len))
}

/// Writes the archive (a tar of the OCI image layout) of one image to `out`, using `work` (a directory of its
/// own) for the layer on its way.
pub fn write_archive(spec: &ImageSpec, work: &Path, out: &Path) -> Result<(), String> {
    let tag = tag_of(&spec.reference)
        .ok_or_else(|| format!("the image name `{}` has no tag", spec.reference))?;
    let layer_path = work.join("layer.tar");
    let (layer_digest, layer_size) = write_layer(&spec.files, &layer_path)?;
    let mut config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "hsw-cli bundle build"}],
    });
    if !spec.entrypoint.is_empty() {
        config["config"]["Entrypoint"] = json!(spec.entrypoint);
    }
    let config = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": layer_size}],
    }))
    .map_err(|e| e.to_string())?;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": digest(&manifest),
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": spec.reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .map_err(|e| e.to_string())?;
    let file =
        std::fs::File::create(out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(file));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", out.display());
    for d in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, d, std::io::empty()).map_err(fail)?;
    }
    // Blobs in digest order, so the same inputs give the same archive.
    let mut blobs: Vec<(String, Option<&[u8]>)> = vec![
        (digest(&config), Some(&config)),
        (layer_digest, None),
        (digest(&manifest), Some(&manifest)),
    ];
    blobs.sort();
    for (d, bytes) in blobs {
        let name = format!("blobs/sha256/{}", hex(&d));
        match bytes {
            Some(bytes) => {
                let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
                b.append_data(&mut h, &name, bytes).map_err(fail)?;
            }
            None => {
                let f = std::fs::File::open(&layer_path).map_err(fail)?;
                let mut h = header(tar::EntryType::Regular, 0o644, layer_size);
                b.append_data(&mut h, &name, f.take(layer_size))
                    .map_err(fail)?;
            }
        }
    }
    for (name, bytes) in [
        ("index.json", index.as_slice()),
        (
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#.as_slice(),
        ),
    ] {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        b.append_data(&mut h, name, bytes).map_err(fail)?;
    }
    b.into_inner().map_err(fail)?.flush().map_err(fail)?;
    std::fs::remove_file(&layer_path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The archive's entries: name -> bytes (directories: empty), in archive order.
    fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>, u32)> {
        let mut a = tar::Archive::new(archive);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mode = e.header().mode().unwrap();
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                (name, v, mode)
            })
            .collect()
    }

    /// The archive's bytes (written in a directory of its own).
    fn archive(spec: &ImageSpec) -> Result<Vec<u8>, String> {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("image.oci.tar");
        write_archive(spec, work.path(), &out)?;
        assert!(
            !work.path().join("layer.tar").exists(),
            "the layer is cleaned up"
        );
        Ok(std::fs::read(out).unwrap())
    }

    fn spec(dir: &Path) -> ImageSpec {
        std::fs::write(dir.join("etcd"), b"#!etcd\n").unwrap();
        std::fs::write(dir.join("etcdctl"), b"#!etcdctl\n").unwrap();
        ImageSpec {
            reference: "registry.hsw.invalid/etcd:3.6.5-0".into(),
            files: vec![
                ("/usr/local/bin/etcdctl".into(), dir.join("etcdctl")),
                ("/usr/local/bin/etcd".into(), dir.join("etcd")),
            ],
            entrypoint: vec![],
        }
    }

    #[test]
    fn the_layout_holds_together_and_names_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let a = archive(&spec(dir.path())).unwrap();
        let files: BTreeMap<String, Vec<u8>> =
            entries(&a).into_iter().map(|(n, b, _)| (n, b)).collect();
        assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
        let blob = |d: &str| {
            let b = &files[&format!("blobs/sha256/{}", hex(d))];
            assert_eq!(digest(b), d, "a blob's name is its digest");
            b.clone()
        };
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            "registry.hsw.invalid/etcd:3.6.5-0"
        );
        assert_eq!(
            m["annotations"]["org.opencontainers.image.ref.name"],
            "3.6.5-0"
        );
        let manifest_bytes = blob(m["digest"].as_str().unwrap());
        assert_eq!(m["size"], manifest_bytes.len());
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        let config: serde_json::Value =
            serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0], layer_digest,
            "uncompressed: diff id = digest"
        );
        assert!(config["config"].get("Entrypoint").is_none());
        let layer = blob(layer_digest);
        let inside = entries(&layer);
        let names: Vec<&str> = inside.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/etcd",
                "usr/local/bin/etcdctl"
            ]
        );
        assert_eq!(inside[3].1, b"#!etcd\n");
        assert!(inside.iter().all(|(_, _, mode)| *mode == 0o755));
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes_and_an_entrypoint_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path());
        assert_eq!(archive(&s).unwrap(), archive(&s).unwrap());
        let mut with = s.clone();
        with.entrypoint = vec!["/coredns".into()];
        let a = archive(&with).unwrap();
        assert_ne!(a, archive(&s).unwrap());
        let files: BTreeMap<String, Vec<u8>> =
            entries(&a).into_iter().map(|(n, b, _)| (n, b)).collect();
        let config = files
            .values()
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .find(|v| v.get("rootfs").is_some())
            .unwrap();
        assert_eq!(config["config"]["Entrypoint"], json!(["/coredns"]));
    }

    #[test]
    fn bad_names_and_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path());
        s.reference = "registry.hsw.invalid:5000/etcd".into();
        assert!(archive(&s).unwrap_err().contains("has no tag"));
        for bad in ["usr/bin/x", "/", "/usr/../x", "/usr//x", "/usr/./x"] {
            let mut s = spec(dir.path());
            s.files[0].0 = bad.into();
            assert!(
                archive(&s)
                    .unwrap_err()
                    .contains("not a plain absolute path"),
                "{bad}"
            );
        }
        let mut s = spec(dir.path());
        s.files[0].1 = dir.path().join("missing");
        assert!(archive(&s).unwrap_err().starts_with("cannot read "));
        assert_eq!(tag_of("a.b/c/d:v1"), Some("v1"));
        assert_eq!(tag_of("a.b:5000/c"), None);
    }
}
