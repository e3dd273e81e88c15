//! A backup of a deployment in a temporary directory over a fake libvirt and fake guests; then `verify`, a
//! damaged and an added file, the pieces put back, `list` and `--keep`.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::runner::fake::FakeRunner;
use crate::up::testing::{fixture, text, Fixture};

const URI: &str = "qemu+unix:///system?socket=/run/hsw-sandbox/sb/libvirt/libvirt-sock";
const CTL: &str = "hsw-dev-controller-1";

fn write(p: &Path, bytes: &[u8], mode: u32) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Flips the lowest bit of the byte at `at` (from the end when negative) of the file `p`.
fn flip_byte(p: &Path, at: isize) {
    let mut bytes = std::fs::read(p).unwrap();
    let i = if at < 0 {
        bytes.len() - at.unsigned_abs()
    } else {
        at.unsigned_abs()
    };
    bytes[i] ^= 0x01;
    std::fs::write(p, &bytes).unwrap();
}

/// `backup verify` (without a key) fails naming `piece` as damaged.
fn assert_damaged(dir: &Path, piece: &str) {
    let e = verify_cmd(dir, &crypt::OpenArgs::default(), &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("{piece} is damaged")), "{e}");
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A deployment: its state directory, a pool with the controller's disk and seed and a base image, and a
/// libvirt that runs the controller (a second VM is shut off).
fn deployment(f: &Fixture, runner: &FakeRunner) -> PathBuf {
    let state = f.dir.path().join("state");
    write(
        &state.join("terraform/terraform.tfstate"),
        b"{\"version\":4}",
        0o600,
    );
    write(&state.join("terraform/main.tf"), b"# root", 0o644);
    write(
        &state.join("terraform/.terraform/providers/x"),
        b"plugin",
        0o755,
    );
    write(&state.join("ssh/hpc/id_ed25519"), b"KEY", 0o600);
    write(&state.join("munge/hpc/munge.key"), b"MUNGE", 0o400);
    write(&state.join("logs/up.log"), b"log", 0o600);
    write(&state.join("terraform-mirror/p/bin"), b"provider", 0o755);
    let pool = f.dir.path().join("pool");
    write(
        &pool.join(format!("{CTL}/root.qcow2")),
        b"controller disk",
        0o600,
    );
    write(&pool.join(format!("{CTL}/cidata.iso")), b"seed", 0o600);
    write(
        &pool.join("hsw-dev-compute-1/root.qcow2"),
        b"compute disk",
        0o600,
    );
    write(&pool.join("images/hpc/base.qcow2"), b"base image", 0o644);
    std::fs::set_permissions(pool.join(CTL), std::fs::Permissions::from_mode(0o751)).unwrap();
    let blk = format!(
        "file disk vda {0}/{CTL}/root.qcow2\nfile cdrom sda {0}/{CTL}/cidata.iso\n",
        pool.display()
    );
    runner
        .on(
            &["list", "--all", "--name"],
            0,
            &format!("{CTL}\nhsw-dev-compute-1\n"),
        )
        .on(&["net-list"], 0, "hsw-hpc\n")
        .on(
            &["dumpxml", CTL],
            0,
            "<domain><name>hsw-dev-controller-1</name></domain>",
        )
        .on(
            &["dumpxml"],
            0,
            "<domain><name>hsw-dev-compute-1</name></domain>",
        )
        .on(
            &["dominfo", CTL],
            0,
            "UUID: u-ctl\nState: running\nAutostart: disable\n",
        )
        .on(
            &["dominfo"],
            0,
            "UUID: u-c1\nState: shut off\nAutostart: disable\n",
        )
        .on(&["domblklist", CTL], 0, &blk)
        .on(&["domblklist"], 0, "")
        .on(
            &["net-dumpxml"],
            0,
            "<network><name>hsw-hpc</name></network>",
        )
        .on(
            &["net-info"],
            0,
            "Name: hsw-hpc\nActive: yes\nAutostart: yes\n",
        )
        .on(&["mysqldump"], 0, "-- MariaDB dump\n")
        .on(&["tar"], 0, "home/alice/file\n");
    pool
}

fn backup(f: &Fixture, runner: &FakeRunner, keep: Option<u32>) -> (Result<PathBuf, Error>, String) {
    backup_sealed(f, runner, keep, None)
}

fn backup_sealed(
    f: &Fixture,
    runner: &FakeRunner,
    keep: Option<u32>,
    seal: Option<&crypt::SealArgs>,
) -> (Result<PathBuf, Error>, String) {
    let ctx = f.ctx(runner);
    let session = fixture::session();
    let pool = f.dir.path().join("pool");
    let mut out = Vec::new();
    let r = write_backup(
        &ctx,
        &session,
        (URI, &pool),
        &f.dir.path().join("backups"),
        (keep, true),
        Extra {
            seal,
            previous_root: None,
        },
        &mut out,
    );
    (r, text(&out))
}

#[test]
fn a_backup_holds_the_deployment_and_verifies() {
    let f = Fixture::new(Some("sb"));
    let runner = FakeRunner::new();
    let pool = deployment(&f, &runner);
    let (r, said) = backup(&f, &runner, None);
    let dir = r.unwrap_or_else(|e| panic!("{e}\n{said}"));
    assert!(said.contains("verified: every piece read back"), "{said}");
    assert_eq!(mode_of(&dir), 0o700);
    let m = manifest::read(&dir).unwrap();
    let paths: Vec<&str> = m.pieces.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "config/cluster.yaml",
        "state/terraform/terraform.tfstate",
        "state/terraform/main.tf",
        "state/ssh/hpc/id_ed25519",
        "state/munge/hpc/munge.key",
        "libvirt/domain-hsw-dev-controller-1.xml",
        "libvirt/domain-hsw-dev-compute-1.xml",
        "libvirt/network-hsw-hpc.xml",
        "pool/hsw-dev-controller-1/root.qcow2",
        "pool/hsw-dev-controller-1/cidata.iso",
        "pool/hsw-dev-compute-1/root.qcow2",
        "pool/images/hpc/base.qcow2",
        "dumps/slurm-accounting.sql",
        "dumps/home.tar",
    ] {
        assert!(paths.contains(&want), "{want} not in {paths:?}");
    }
    for never in [
        "state/logs/up.log",
        "state/terraform/.terraform/providers/x",
        "state/terraform-mirror/p/bin",
    ] {
        assert!(!paths.contains(&never), "{never} was backed up");
    }
    // Every file is root's only, whatever the original's mode; the original's mode is recorded.
    for p in &m.pieces {
        assert_eq!(mode_of(&dir.join(&p.path)), 0o600, "{}", p.path);
    }
    let munge = m
        .pieces
        .iter()
        .find(|p| p.path.ends_with("munge.key"))
        .unwrap();
    assert_eq!(munge.mode, 0o400);
    let base = m
        .pieces
        .iter()
        .find(|p| p.path.ends_with("base.qcow2"))
        .unwrap();
    assert_eq!(base.mode, 0o644);
    // The running VM's disk came through a snapshot and went back; the shut-off one was copied as it was.
    let ctl = m.domains.iter().find(|d| d.name == CTL).unwrap();
    assert!(
        ctl.running && ctl.uuid == "u-ctl" && ctl.disks.contains("external snapshot"),
        "{ctl:?}"
    );
    let argvs = runner.argvs();
    let snap = argvs
        .iter()
        .position(|a| a.contains(&"snapshot-create-as".to_owned()))
        .unwrap();
    let commit = argvs
        .iter()
        .position(|a| a.contains(&"blockcommit".to_owned()))
        .unwrap();
    assert!(snap < commit);
    // Its file systems were flushed over SSH right before the snapshot.
    let sync = argvs
        .iter()
        .position(|a| a.last().map(String::as_str) == Some("sync") && a.contains(&"ssh".to_owned()))
        .unwrap_or_else(|| panic!("no sync over ssh: {argvs:?}"));
    assert!(sync < snap);
    assert!(
        ctl.disks
            .starts_with("file systems flushed (sync over SSH); "),
        "{}",
        ctl.disks
    );
    assert!(!pool.join(format!("{CTL}/root.qcow2.hsw-backup")).exists());
    // The dumps ran over ssh inside the sandbox; PostgreSQL's VM is not running, which the manifest says.
    assert!(argvs
        .iter()
        .any(|a| a.contains(&"mysqldump".to_owned()) && a.contains(&"exec".to_owned())));
    assert_eq!(
        std::fs::read(dir.join("dumps/slurm-accounting.sql")).unwrap(),
        b"-- MariaDB dump\n"
    );
    assert!(
        m.skipped
            .iter()
            .any(|s| s.contains("postgresql.sql") && s.contains("not running")),
        "{:?}",
        m.skipped
    );
    assert_eq!(m.deployment.sandbox.as_deref(), Some("sb"));
    assert_eq!(m.deployment.pool_dir, pool);
    assert_eq!(
        m.deployment.config_sha256,
        hsw_core::render::terraform::sha256_hex(&fixture::session().source)
    );
    // Nothing half-written is left.
    let names: Vec<String> = std::fs::read_dir(f.dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, std::slice::from_ref(&m.created));

    // verify: fine, then one flipped byte, then a file the manifest does not list.
    let mut sink = Vec::new();
    verify_cmd(&dir, &crypt::OpenArgs::default(), &mut sink).unwrap_or_else(|e| panic!("{e}"));
    assert!(text(&sink).contains("verified, "), "{}", text(&sink));
    let disk = dir.join(format!("pool/{CTL}/root.qcow2"));
    flip_byte(&disk, 3);
    std::fs::write(dir.join("pool/extra"), b"x").unwrap();
    let e = verify_cmd(&dir, &crypt::OpenArgs::default(), &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("pool/{CTL}/root.qcow2 is damaged")),
        "{e}"
    );
    assert!(
        e.contains("pool/extra is in the backup but not in its manifest"),
        "{e}"
    );
}

#[test]
fn pieces_go_back_with_their_modes_and_damage_is_caught() {
    let f = Fixture::new(Some("sb"));
    let runner = FakeRunner::new();
    deployment(&f, &runner);
    let dir = backup(&f, &runner, None)
        .0
        .unwrap_or_else(|e| panic!("{e}"));
    let m = manifest::read(&dir).unwrap();
    let to = tempfile::tempdir().unwrap();
    let mut d = m.deployment.clone();
    d.state_dir = to.path().join("state");
    d.terraform_dir = d.state_dir.join("terraform");
    d.pool_dir = to.path().join("pool");
    let n = restore::put_back_for_tests(&dir, &m, &d, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 9, "{n}");
    assert_eq!(
        std::fs::read(d.state_dir.join("ssh/hpc/id_ed25519")).unwrap(),
        b"KEY"
    );
    assert_eq!(mode_of(&d.state_dir.join("munge/hpc/munge.key")), 0o400);
    assert_eq!(mode_of(&d.pool_dir.join("images/hpc/base.qcow2")), 0o644);
    // The directories come back with their modes (QEMU's user goes through them to the disks).
    assert_eq!(mode_of(&d.pool_dir.join(CTL)), 0o751);
    assert!(
        m.dirs
            .iter()
            .any(|x| x.path == format!("pool/{CTL}") && x.mode == 0o751),
        "{:?}",
        m.dirs
    );
    assert_eq!(
        std::fs::read(d.pool_dir.join(format!("{CTL}/root.qcow2"))).unwrap(),
        b"controller disk"
    );

    let seed = dir.join(format!("pool/{CTL}/cidata.iso"));
    std::fs::write(&seed, b"SEED").unwrap();
    let e = restore::put_back_for_tests(&dir, &m, &d, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "pool/{CTL}/cidata.iso changed while it was restored"
        )),
        "{e}"
    );
}

#[test]
fn an_encrypted_backup_holds_no_plaintext_verifies_without_the_key_and_opens_with_it() {
    let f = Fixture::new(Some("sb"));
    let runner = FakeRunner::new();
    deployment(&f, &runner);
    let me = age::x25519::Identity::generate();
    let seal = crypt::SealArgs {
        recipients: vec![me.to_public().to_string()],
        ..Default::default()
    };
    let (r, said) = backup_sealed(&f, &runner, None, Some(&seal));
    let dir = r.unwrap_or_else(|e| panic!("{e}\n{said}"));
    assert!(said.contains("encrypted to age1"), "{said}");
    let m = manifest::read(&dir).unwrap();
    assert_eq!(m.format, manifest::FORMAT_ENCRYPTED);
    let enc = m.encryption.clone().unwrap();
    assert_eq!(enc.recipients, [me.to_public().to_string()]);
    assert_eq!(mode_of(&dir.join(crypt::KEY_FILE)), 0o600);
    // No piece shows what it holds: not the keys, not the disks, not the dumps, not the config.
    for p in &m.pieces {
        let bytes = std::fs::read(dir.join(&p.path)).unwrap();
        assert!(
            bytes.starts_with(b"age-encryption.org/v1"),
            "{} is not an age file",
            p.path
        );
        for plain in [&b"MUNGE"[..], b"controller disk", b"MariaDB", b"<domain>"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain),
                "{} shows its content",
                p.path
            );
        }
    }
    // verify needs no key; with the key it opens every piece; with another it says which key it needs.
    let mut sink = Vec::new();
    verify_cmd(&dir, &crypt::OpenArgs::default(), &mut sink).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text(&sink).contains("--identity or --passphrase-file opens them"),
        "{}",
        text(&sink)
    );
    let keys = tempfile::tempdir().unwrap();
    let id = |name: &str, key: &age::x25519::Identity| {
        use age::secrecy::ExposeSecret as _;
        let p = keys.path().join(name);
        write(&p, key.to_string().expose_secret().as_bytes(), 0o600);
        crypt::OpenArgs {
            identities: vec![p],
            passphrase_file: None,
        }
    };
    let mine = id("me", &me);
    let mut sink = Vec::new();
    verify_cmd(&dir, &mine, &mut sink).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text(&sink).contains("every piece decrypts"),
        "{}",
        text(&sink)
    );
    let e = verify_cmd(
        &dir,
        &id("other", &age::x25519::Identity::generate()),
        &mut Vec::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("does not open the backup") && e.contains("age1"),
        "{e}"
    );

    // One piece by hand: `backup cat`.
    let mut dump = Vec::new();
    cat(&dir, "dumps/slurm-accounting.sql", &mine, &mut dump).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dump, b"-- MariaDB dump\n");
    let e = cat(&dir, "dumps/nothing.sql", &mine, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the dumps are dumps/slurm-accounting.sql, dumps/home.tar"),
        "{e}"
    );
    let e = cat(
        &dir,
        "dumps/home.tar",
        &crypt::OpenArgs::default(),
        &mut Vec::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("the backup is encrypted"), "{e}");

    // The pieces go back decrypted, with their modes.
    let opener = crypt::Opener::new(&dir, &enc, &mine).unwrap();
    let to = tempfile::tempdir().unwrap();
    let mut d = m.deployment.clone();
    d.state_dir = to.path().join("state");
    d.terraform_dir = d.state_dir.join("terraform");
    d.pool_dir = to.path().join("pool");
    restore::put_back_for_tests(&dir, &m, &d, Some(&opener)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        std::fs::read(d.state_dir.join("munge/hpc/munge.key")).unwrap(),
        b"MUNGE"
    );
    assert_eq!(mode_of(&d.state_dir.join("munge/hpc/munge.key")), 0o400);
    assert_eq!(
        std::fs::read(d.pool_dir.join(format!("{CTL}/root.qcow2"))).unwrap(),
        b"controller disk"
    );

    // A flipped byte in a disk: verify names it without the key; the key cannot open it either.
    let disk = dir.join(format!("pool/{CTL}/root.qcow2"));
    flip_byte(&disk, -1);
    assert_damaged(&dir, &format!("pool/{CTL}/root.qcow2"));
    let mut piece = std::fs::File::open(&disk).unwrap();
    assert!(opener.open(&mut piece, &mut std::io::sink()).is_err());
}

#[test]
fn the_snapshot_before_a_change_holds_the_root_as_it_was_and_rollback_finds_it() {
    let f = Fixture::new(Some("sb"));
    let runner = FakeRunner::new();
    let pool = deployment(&f, &runner);
    let ctx = f.ctx(&runner);
    // The root as the last `up` left it, read before the generate step writes it again.
    let old = root_files(&ctx.tf_dir).unwrap();
    let names: Vec<(&str, u32)> = old.iter().map(|(n, _, m)| (n.as_str(), *m)).collect();
    assert_eq!(
        names,
        [("main.tf", 0o644)],
        "not the state, not .terraform/"
    );
    // The generate step writes the root for the change: main.tf changes, a file is new.
    write(
        &ctx.tf_dir.join("main.tf"),
        b"# root for 2 compute nodes",
        0o640,
    );
    write(&ctx.tf_dir.join("extra.tf"), b"# new", 0o644);
    let dir = write_backup(
        &ctx,
        &fixture::session(),
        (URI, &pool),
        &f.dir.path().join("pre-change"),
        (Some(1), false),
        Extra {
            seal: None,
            previous_root: Some(&old),
        },
        &mut Vec::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let m = manifest::read(&dir).unwrap();
    let mut root: Vec<(&str, u32)> = m
        .pieces
        .iter()
        .filter(|p| p.path.starts_with("state/terraform/"))
        .map(|p| (p.path.as_str(), p.mode))
        .collect();
    root.sort();
    assert_eq!(
        root,
        [
            ("state/terraform/main.tf", 0o644),
            ("state/terraform/terraform.tfstate", 0o600)
        ]
    );
    assert_eq!(
        std::fs::read(dir.join("state/terraform/main.tf")).unwrap(),
        b"# root"
    );
    assert!(!dir.join("state/terraform/extra.tf").exists());
    manifest::verify(&dir, &mut |_| {}).unwrap_or_else(|p| panic!("{p:?}"));

    // rollback takes the newest snapshot of this deployment only.
    let pre = f.dir.path().join("pre-change");
    assert_eq!(
        restore::newest_of(&pre, Some("sb"), ctx.state.root()).unwrap(),
        dir
    );
    let e = restore::newest_of(&pre, Some("sb"), Path::new("/elsewhere"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no snapshot of this deployment"), "{e}");
    assert!(restore::newest_of(&pre, None, ctx.state.root()).is_err());
}

#[test]
fn nothing_to_back_up_is_said_and_leaves_nothing() {
    let f = Fixture::new(Some("sb"));
    let runner = FakeRunner::new();
    let (r, _) = backup(&f, &runner, None);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("terraform.tfstate is missing"), "{e}");
    // libvirt failing half-way: the partial backup is removed.
    let runner = FakeRunner::new();
    runner.on_full(
        &["net-dumpxml"],
        Some(1),
        "",
        "error: network not found\n",
        None,
    );
    deployment(&f, &runner);
    let (r, _) = backup(&f, &runner, None);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("network not found"), "{e}");
    let left: Vec<_> = std::fs::read_dir(f.dir.path().join("backups"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn list_shows_the_backups_and_keep_prunes_this_deployments_oldest() {
    let f = Fixture::new(Some("sb"));
    let runner = FakeRunner::new();
    deployment(&f, &runner);
    let dir = backup(&f, &runner, None)
        .0
        .unwrap_or_else(|e| panic!("{e}"));
    let root = dir.parent().unwrap().to_path_buf();
    // Two older copies of it (as if taken before), and one of another deployment.
    let m = manifest::read(&dir).unwrap();
    for (name, unix, state) in [
        ("20200101T000000Z", 1, m.deployment.state_dir.clone()),
        ("20200102T000000Z", 2, m.deployment.state_dir.clone()),
        ("20200103T000000Z", 3, PathBuf::from("/other")),
    ] {
        let mut old = m.clone();
        old.created = name.into();
        old.created_unix = unix;
        old.deployment.state_dir = state;
        let d = root.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join(MANIFEST), serde_json::to_vec(&old).unwrap()).unwrap();
    }
    let mut out = Vec::new();
    list(&root, Format::Text, &mut out).unwrap();
    let t = text(&out);
    assert_eq!(t.lines().count(), 4, "{t}");
    assert!(
        t.lines().next().unwrap().starts_with("20200101T000000Z"),
        "{t}"
    );
    let mut out = Vec::new();
    prune(&root, &m.deployment, 1, &mut out).unwrap();
    assert!(!root.join("20200101T000000Z").exists());
    assert!(!root.join("20200102T000000Z").exists());
    assert!(
        root.join("20200103T000000Z").exists(),
        "another deployment's backup was removed"
    );
    assert!(dir.exists());
    let mut out = Vec::new();
    list(&root, Format::Json, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2));
}
