//! The libvirt side of a backup, through [`Virsh`]: each domain's and network's XML and state, and a running
//! domain's disks taken without stopping it: an external disk-only snapshot moves the guest's writes to an
//! overlay beside each disk (`<disk>.hsw-backup`), the disk (now read only) is copied, and the overlay is
//! committed back into it (`blockcommit --active --shallow --pivot`: into that disk, not into the guest image
//! under it) and removed. The domains carry no guest agent
//! channel, so the copy is crash-consistent (as after a power cut; the application dumps are taken besides).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::{DomainRecord, NetworkRecord};
use crate::error::Error;
use crate::up::virsh::Virsh;

/// The suffix of the overlays a backup puts in front of a running domain's disks for the time of the copy.
pub const OVERLAY_SUFFIX: &str = ".hsw-backup";

/// One disk of a domain (`virsh domblklist --details`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `disk` or `cdrom` (or `floppy`, `lun`).
    pub device: String,
    /// Its target (`vda`).
    pub target: String,
    /// Its file (`None`: an empty drive).
    pub source: Option<PathBuf>,
}

impl Disk {
    /// Whether the guest writes to it: a disk with a file (a CD-ROM is read only).
    pub fn writable(&self) -> bool {
        self.device == "disk" && self.source.is_some()
    }
}

/// A domain as libvirt has it.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Name, UUID, state.
    pub record: DomainRecord,
    /// `virsh dumpxml --inactive --security-info`.
    pub xml: String,
    /// Its disks.
    pub disks: Vec<Disk>,
}

/// `Key:   value` lines (`virsh dominfo`, `net-info`) as a map.
pub fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// `virsh -q domblklist NAME --details`: `TYPE DEVICE TARGET SOURCE` rows (`-` for no source).
pub fn disks(text: &str) -> Vec<Disk> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 3 && w[0] != "Type").then(|| Disk {
                device: w[1].to_owned(),
                target: w[2].to_owned(),
                source: (w.len() > 3 && w[3] != "-").then(|| PathBuf::from(w[3..].join(" "))),
            })
        })
        .collect()
}

/// A domain's XML, state and disks.
pub fn domain(v: &Virsh<'_>, name: &str) -> Result<Domain, Error> {
    let call = |args: &[&str]| v.call(args).map_err(Error::invalid);
    let xml = call(&["dumpxml", "--inactive", "--security-info", name])?;
    let info = fields(&call(&["dominfo", name])?);
    let disks = disks(&call(&["domblklist", name, "--details"])?);
    Ok(Domain {
        record: DomainRecord {
            name: name.to_owned(),
            uuid: info.get("UUID").cloned().unwrap_or_default(),
            running: info.get("State").is_some_and(|s| s == "running"),
            autostart: info.get("Autostart").is_some_and(|s| s == "enable"),
            disks: String::new(),
        },
        xml,
        disks,
    })
}

/// A network's state and XML.
pub fn network(v: &Virsh<'_>, name: &str) -> Result<(NetworkRecord, String), Error> {
    let call = |args: &[&str]| v.call(args).map_err(Error::invalid);
    let xml = call(&["net-dumpxml", "--inactive", name])?;
    let info = fields(&call(&["net-info", name])?);
    Ok((
        NetworkRecord {
            name: name.to_owned(),
            active: info.get("Active").is_some_and(|s| s == "yes"),
            autostart: info.get("Autostart").is_some_and(|s| s == "yes"),
        },
        xml,
    ))
}

/// The overlay a backup puts in front of `disk` for the time of the copy.
pub fn overlay(disk: &Path) -> PathBuf {
    let mut s = disk.as_os_str().to_owned();
    s.push(OVERLAY_SUFFIX);
    PathBuf::from(s)
}

/// Takes a running domain's writable disks (see the module text): `copy` is called once per disk while the
/// guest writes to the overlays; the overlays are merged back whether the copies worked or not. A disk outside
/// `pool` is refused before anything is done. Returns how the disks were taken, in words.
pub fn take_running(
    v: &Virsh<'_>,
    d: &Domain,
    pool: &Path,
    copy: &mut dyn FnMut(&Path) -> Result<(), Error>,
) -> Result<String, Error> {
    let name = &d.record.name;
    let writable: Vec<&Disk> = d.disks.iter().filter(|k| k.writable()).collect();
    if writable.is_empty() {
        return Ok("no writable disk".into());
    }
    for k in &writable {
        let src = k.source.as_deref().unwrap_or(Path::new(""));
        if !src.starts_with(pool) {
            return Err(Error::invalid(format!(
                "the disk {} of VM {name} is {}, outside the pool {}: hsw backs up the pool only",
                k.target,
                src.display(),
                pool.display()
            )));
        }
        let o = overlay(src);
        if o.exists() {
            return Err(Error::invalid(format!(
                "{} is there already: an earlier backup of {name} stopped between its snapshot and the merge. \
                 If the VM still writes to it (`virsh domblklist {name}` lists it), merge it with `virsh -c {} \
                 blockcommit {name} {} --active --shallow --pivot`; then remove the file and back up again",
                o.display(),
                v.uri(),
                k.target
            )));
        }
    }
    let mut args: Vec<String> = [
        "snapshot-create-as",
        name,
        "--name",
        "hsw-backup",
        "--disk-only",
        "--atomic",
        "--no-metadata",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for k in &d.disks {
        args.push("--diskspec".into());
        args.push(match (&k.source, k.writable()) {
            (Some(src), true) => format!(
                "{},snapshot=external,file={}",
                k.target,
                overlay(src).display()
            ),
            _ => format!("{},snapshot=no", k.target),
        });
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    v.call(&argv).map_err(|e| {
        Error::invalid(format!(
            "the snapshot of VM {name} failed, so its disks were not copied ({e}); nothing changed on the VM"
        ))
    })?;
    let mut copied = Ok(());
    for k in &writable {
        if let Err(e) = copy(k.source.as_deref().unwrap_or(Path::new(""))) {
            copied = Err(e);
            break;
        }
    }
    let mut unmerged = Vec::new();
    for k in &writable {
        let src = k.source.as_deref().unwrap_or(Path::new(""));
        // --shallow: into the disk under the overlay only. Without it libvirt commits into the bottom of the
        // chain, the guest image every VM of the cluster grows from.
        match v.call(&["blockcommit", name, &k.target, "--active", "--shallow", "--pivot"]) {
            Ok(_) => {
                if let Err(e) = std::fs::remove_file(overlay(src)) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        unmerged.push(format!(
                            "{} was merged but cannot be removed ({e}): remove it",
                            overlay(src).display()
                        ));
                    }
                }
            }
            Err(e) => unmerged.push(format!(
                "{e}: VM {name} still writes to {} (its data is safe there); merge it with `virsh -c {} \
                 blockcommit {name} {} --active --shallow --pivot`, then remove the file",
                overlay(src).display(),
                v.uri(),
                k.target
            )),
        }
    }
    if !unmerged.is_empty() {
        return Err(Error::invalid(unmerged.join("; ")));
    }
    copied.map(|()| {
        format!(
            "{} disk(s) from an external snapshot of the running VM, crash-consistent (no guest agent), merged back",
            writable.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;

    const URI: &str = "qemu+unix:///system?socket=/s";
    const BLK: &str =
        "file   disk    vda   /pool/vm1/root.qcow2\nfile   cdrom   sda   /pool/vm1/cidata.iso\n\
                       file   cdrom   sdb   -\n";

    #[test]
    fn the_listings_read() {
        let d = disks(BLK);
        assert_eq!(d.len(), 3);
        assert_eq!(
            d[0].source.as_deref(),
            Some(Path::new("/pool/vm1/root.qcow2"))
        );
        assert!(d[0].writable() && !d[1].writable() && !d[2].writable());
        assert_eq!(d[2].source, None);
        let f = fields("Id:             3\nName:           vm1\nUUID:           u-1\nState:          running\n\
                        Autostart:      disable\n");
        assert_eq!(f["UUID"], "u-1");
        assert_eq!(f["State"], "running");
        assert_eq!(
            overlay(Path::new("/p/r.qcow2")),
            Path::new("/p/r.qcow2.hsw-backup")
        );
    }

    fn running(runner: &FakeRunner) -> Domain {
        runner
            .on(&["dumpxml"], 0, "<domain/>")
            .on(
                &["dominfo"],
                0,
                "UUID: u-1\nState: running\nAutostart: enable\n",
            )
            .on(&["domblklist"], 0, BLK);
        domain(&Virsh::new(runner, URI), "vm1").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Snapshot (the CD-ROMs left alone), the copy while the guest writes to the overlay, the merge back.
    #[test]
    fn a_running_domain_is_snapshotted_copied_and_merged_back() {
        let runner = FakeRunner::new();
        let d = running(&runner);
        assert!(d.record.running && d.record.autostart);
        let mut copied = Vec::new();
        let how = take_running(
            &Virsh::new(&runner, URI),
            &d,
            Path::new("/pool"),
            &mut |p| {
                copied.push(p.to_path_buf());
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(how.contains("crash-consistent"), "{how}");
        assert_eq!(copied, [PathBuf::from("/pool/vm1/root.qcow2")]);
        let argvs = runner.argvs();
        let snap = argvs
            .iter()
            .find(|a| a.contains(&"snapshot-create-as".to_owned()))
            .unwrap_or_else(|| panic!("no snapshot: {argvs:?}"));
        for w in [
            "--disk-only",
            "--atomic",
            "--no-metadata",
            "vda,snapshot=external,file=/pool/vm1/root.qcow2.hsw-backup",
            "sda,snapshot=no",
            "sdb,snapshot=no",
        ] {
            assert!(snap.contains(&w.to_owned()), "{w} not in {snap:?}");
        }
        let last = argvs.last().unwrap_or_else(|| panic!("no calls"));
        assert_eq!(
            last[4..],
            [
                "blockcommit",
                "vm1",
                "vda",
                "--active",
                "--shallow",
                "--pivot"
            ]
        );
    }

    /// A failed copy still merges the overlay back; a failed merge names the command that finishes it; a disk
    /// outside the pool is refused before any snapshot.
    #[test]
    fn failures_leave_the_vm_on_its_own_disk_or_say_how() {
        let runner = FakeRunner::new();
        let d = running(&runner);
        let v = Virsh::new(&runner, URI);
        let e = take_running(&v, &d, Path::new("/pool"), &mut |_| {
            Err(Error::invalid("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert!(runner
            .argvs()
            .iter()
            .any(|a| a.contains(&"blockcommit".to_owned())));

        let runner = FakeRunner::new();
        let d = running(&runner);
        runner.on_full(
            &["blockcommit"],
            Some(1),
            "",
            "error: block job failed\n",
            None,
        );
        let e = take_running(
            &Virsh::new(&runner, URI),
            &d,
            Path::new("/pool"),
            &mut |_| Ok(()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("still writes to /pool/vm1/root.qcow2.hsw-backup"),
            "{e}"
        );
        assert!(
            e.contains("blockcommit vm1 vda --active --shallow --pivot"),
            "{e}"
        );

        let runner = FakeRunner::new();
        let d = running(&runner);
        let e = take_running(
            &Virsh::new(&runner, URI),
            &d,
            Path::new("/elsewhere"),
            &mut |_| Ok(()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("outside the pool /elsewhere"), "{e}");
        assert!(!runner
            .argvs()
            .iter()
            .any(|a| a.contains(&"snapshot-create-as".to_owned())));
    }
}
