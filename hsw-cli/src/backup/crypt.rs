//! Encrypted backups, with age (the `age` crate; no cryptography of hsw's own).
//!
//! `hsw-cli backup --encrypt-to KEY` (age public keys, or `--encrypt-to-file`) or `--encrypt-passphrase-file
//! FILE` makes a fresh X25519 data key for the backup, encrypts every piece to it (each piece a complete age
//! file), and writes the data key itself, encrypted to the user's keys or passphrase, as [`KEY_FILE`]. One
//! passphrase derivation (scrypt) per backup, not one per piece; the manifest stays readable, so `backup
//! verify` checks every piece's sha256 (of the encrypted bytes) without any key, and age's authentication
//! checks the plaintext when a piece is opened. The manifest records the public keys the data key was wrapped
//! to, and of the plaintexts only the config's sha256 (which ties the pieces to one deployment): never a hash of
//! a key, a password or a disk.
//!
//! Opening (`restore`, `backup verify --identity/--passphrase-file`): the user's age identity file
//! (`age-keygen`'s output) or passphrase file opens [`KEY_FILE`], and its data key opens the pieces.
//!
//! Passphrases and identities are read from files only (never from arguments, which other users see in
//! `ps`); a passphrase or identity file that others may read is refused.

use std::io::{self, BufRead as _, Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use age::secrecy::{ExposeSecret as _, SecretString};
use clap::Args;
use serde::{Deserialize, Serialize};

use hsw_core::fsx::{self, Sha256Tee};

/// The encrypted data key's file name in an encrypted backup.
pub const KEY_FILE: &str = "key.age";
/// The manifest's name for how the pieces are encrypted.
const SCHEME: &str = "age";
/// The most a key, identity, recipients or passphrase file may weigh.
const MAX_KEY_FILE: u64 = 64 << 10;

/// `backup`'s encryption options.
#[derive(Debug, Clone, Default, Args)]
pub struct SealArgs {
    /// Encrypt the backup to this age public key (`age1...`; repeatable): only its identity opens it
    /// (`restore --identity FILE`).
    #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// Encrypt the backup to the age public keys in FILE (one per line; `#` starts a comment), as `age -R`
    /// reads them (repeatable).
    #[arg(long = "encrypt-to-file", value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
    /// Encrypt the backup with the passphrase on the first line of FILE (readable by its owner only), derived
    /// with scrypt as `age -p` does.
    #[arg(
        long = "encrypt-passphrase-file",
        value_name = "FILE",
        conflicts_with_all = ["recipients", "recipients_files"]
    )]
    pub passphrase_file: Option<PathBuf>,
}

impl SealArgs {
    /// Whether the backup is to be encrypted.
    pub fn wanted(&self) -> bool {
        !self.recipients.is_empty()
            || !self.recipients_files.is_empty()
            || self.passphrase_file.is_some()
    }
}

/// The options that open an encrypted backup (`restore`, `backup verify`).
#[derive(Debug, Clone, Default, Args)]
pub struct OpenArgs {
    /// An age identity file (`age-keygen`'s output) with the key the backup was encrypted to (repeatable).
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// The file whose first line is the passphrase the backup was encrypted with.
    #[arg(
        long = "passphrase-file",
        value_name = "FILE",
        conflicts_with = "identities"
    )]
    pub passphrase_file: Option<PathBuf>,
}

impl OpenArgs {
    /// Whether a key was given.
    pub fn given(&self) -> bool {
        !self.identities.is_empty() || self.passphrase_file.is_some()
    }
}

/// How a backup is encrypted, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `age`: every piece an age file encrypted to the backup's data key.
    pub scheme: String,
    /// The data key, encrypted to `recipients` or the passphrase: [`KEY_FILE`].
    pub key_file: String,
    /// Its sha256.
    pub key_sha256: String,
    /// The age public keys the data key is encrypted to (empty: a passphrase).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Whether a passphrase opens the data key.
    #[serde(default)]
    pub passphrase: bool,
}

/// Encrypts the pieces of one backup.
pub struct Sealer {
    data: age::x25519::Recipient,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

/// Reads a small file whole (bounded), naming it in the error.
fn read_small(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::File::open(path)
        .and_then(|f| fsx::read_at_most(f, MAX_KEY_FILE))
        .map_err(|e| format!("cannot read the {what} {} ({e})", path.display()))?
        .ok_or_else(|| {
            format!(
                "the {what} {} is larger than {} KiB; is it the right file?",
                path.display(),
                MAX_KEY_FILE >> 10
            )
        })
}

/// Refuses a secret file that its group or others may read or write.
fn private(path: &Path, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the {what} {} ({e})", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "the {what} {} is readable or writable by others (mode {:o}); make it its owner's only: chmod 600 {}",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

/// The passphrase on the first line of a private file.
fn passphrase(path: &Path) -> Result<SecretString, String> {
    private(path, "passphrase file")?;
    let bytes = read_small(path, "passphrase file")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("the passphrase file {} is not UTF-8 text", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        return Err(format!(
            "the passphrase file {} has an empty first line; write the passphrase there",
            path.display()
        ));
    }
    Ok(SecretString::from(line))
}

/// Parses age public keys, naming the place of a bad one.
fn recipients(args: &SealArgs) -> Result<Vec<age::x25519::Recipient>, String> {
    let mut out = Vec::new();
    let parse = |s: &str, place: &str| {
        age::x25519::Recipient::from_str(s).map_err(|e| {
            format!(
                "{place}: `{}` is not an age public key ({e}); hsw takes X25519 keys `age1...` as `age-keygen` \
                 prints them",
                s.escape_debug()
            )
        })
    };
    for r in &args.recipients {
        out.push(parse(r.trim(), "--encrypt-to")?);
    }
    for file in &args.recipients_files {
        let bytes = read_small(file, "recipients file")?;
        for (i, line) in bytes.lines().enumerate() {
            let line = line
                .map_err(|_| format!("the recipients file {} is not UTF-8 text", file.display()))?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(parse(line, &format!("{} line {}", file.display(), i + 1))?);
        }
    }
    if out.is_empty() && args.passphrase_file.is_none() {
        return Err("--encrypt-to-file named no age public key".into());
    }
    Ok(out)
}

impl Sealer {
    /// A fresh data key for a backup, and the data key encrypted as `args` asks (the content of
    /// [`KEY_FILE`]) with its record for the manifest (its `key_sha256` set).
    pub fn new(args: &SealArgs) -> Result<(Sealer, Vec<u8>, Encryption), String> {
        Sealer::with_work_factor(args, None)
    }

    /// [`Sealer::new`] with scrypt's work factor set (the tests', to be quick); `None`: age's, calibrated to
    /// about a second on this machine.
    fn with_work_factor(
        args: &SealArgs,
        work_factor: Option<u8>,
    ) -> Result<(Sealer, Vec<u8>, Encryption), String> {
        let data = age::x25519::Identity::generate();
        let secret = data.to_string();
        let mut record = Encryption {
            scheme: SCHEME.into(),
            key_file: KEY_FILE.into(),
            key_sha256: String::new(),
            recipients: Vec::new(),
            passphrase: false,
        };
        let encryptor = if let Some(file) = &args.passphrase_file {
            let mut r = age::scrypt::Recipient::new(passphrase(file)?);
            if let Some(n) = work_factor {
                r.set_work_factor(n);
            }
            record.passphrase = true;
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        } else {
            let rs = recipients(args)?;
            record.recipients = rs.iter().map(ToString::to_string).collect();
            age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
        }
        .map_err(|e| format!("cannot encrypt the backup's key: {e}"))?;
        let mut key = Vec::new();
        let mut w = encryptor
            .wrap_output(&mut key)
            .map_err(|e| format!("cannot encrypt the backup's key: {e}"))?;
        w.write_all(secret.expose_secret().as_bytes())
            .and_then(|()| w.finish().map(|_| ()))
            .map_err(|e| format!("cannot encrypt the backup's key: {e}"))?;
        record.key_sha256 = hsw_core::render::terraform::sha256_hex(&key);
        Ok((
            Sealer {
                data: data.to_public(),
            },
            key,
            record,
        ))
    }

    fn encryptor(&self) -> io::Result<age::Encryptor> {
        age::Encryptor::with_recipients(std::iter::once(&self.data as &dyn age::Recipient))
            .map_err(io::Error::other)
    }

    /// Encrypts everything `from` reads into `to`; returns the size and sha256 of what it wrote.
    pub fn seal(
        &self,
        from: &mut dyn io::Read,
        to: &mut dyn io::Write,
    ) -> io::Result<(u64, String)> {
        let mut tee = Sha256Tee::new(to);
        let mut w = self.encryptor()?.wrap_output(&mut tee)?;
        io::copy(from, &mut w)?;
        w.finish()?;
        Ok(tee.finish())
    }

    /// Writes `bytes` encrypted to `dest` (atomically, `mode`); the size and sha256 of what it wrote.
    pub fn seal_bytes(&self, bytes: &[u8], dest: &Path, mode: u32) -> io::Result<(u64, String)> {
        let mut done = (0, String::new());
        fsx::write_atomic_with(dest, mode, |f| {
            done = self.seal(&mut &bytes[..], f)?;
            Ok(())
        })?;
        Ok(done)
    }

    /// Copies `src` encrypted to `dest` (atomically, `mode`); the size and sha256 of what it wrote.
    pub fn seal_file(&self, src: &Path, dest: &Path, mode: u32) -> io::Result<(u64, String)> {
        let mut done = (0, String::new());
        fsx::write_atomic_with(dest, mode, |f| {
            done = self.seal(&mut io::BufReader::new(std::fs::File::open(src)?), f)?;
            Ok(())
        })?;
        Ok(done)
    }
}

/// Opens the pieces of one encrypted backup.
pub struct Opener {
    data: age::x25519::Identity,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener")
    }
}

impl Opener {
    /// Opens the data key of the backup at `backup` with the user's identities or passphrase.
    pub fn new(backup: &Path, enc: &Encryption, args: &OpenArgs) -> Result<Opener, String> {
        if enc.scheme != SCHEME {
            return Err(format!(
                "the backup is encrypted with `{}`, which this hsw-cli does not know",
                enc.scheme
            ));
        }
        let key_path = backup.join(KEY_FILE);
        let key = read_small(&key_path, "backup key")?;
        let sum = hsw_core::render::terraform::sha256_hex(&key);
        if sum != enc.key_sha256 {
            return Err(format!(
                "{KEY_FILE} is damaged: sha256 {sum}, the manifest says {}",
                enc.key_sha256
            ));
        }
        let how = if enc.passphrase {
            "its passphrase (--passphrase-file FILE)".to_owned()
        } else {
            format!(
                "the identity of one of {} (--identity FILE)",
                enc.recipients.join(", ")
            )
        };
        let ids: Vec<Box<dyn age::Identity>> = if let Some(file) = &args.passphrase_file {
            vec![Box::new(age::scrypt::Identity::new(passphrase(file)?))]
        } else if !args.identities.is_empty() {
            let mut ids = Vec::new();
            for file in &args.identities {
                private(file, "identity file")?;
                let bytes = read_small(file, "identity file")?;
                let parsed = age::IdentityFile::from_buffer(&bytes[..])
                    .and_then(|f| f.into_identities().map_err(io::Error::other))
                    .map_err(|e| {
                        format!(
                            "{} is not an age identity file ({e}); `age-keygen -o FILE` writes one",
                            file.display()
                        )
                    })?;
                ids.extend(parsed);
            }
            ids
        } else {
            return Err(format!("the backup is encrypted: open it with {how}"));
        };
        let opened = age::Decryptor::new_buffered(&key[..])
            .and_then(|d| d.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity)))
            .map_err(|e| format!("the key given does not open the backup ({e}); it needs {how}"))?;
        let mut text = String::new();
        opened
            .take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(|e| format!("{KEY_FILE} does not open ({e})"))?;
        let data = age::x25519::Identity::from_str(text.trim())
            .map_err(|e| format!("{KEY_FILE} does not hold an age key ({e})"))?;
        Ok(Opener { data })
    }

    /// Decrypts everything `from` reads into `to`; returns the size and sha256 of what it read (the
    /// encrypted bytes, as the manifest lists them).
    pub fn open(
        &self,
        from: &mut dyn io::Read,
        to: &mut dyn io::Write,
    ) -> io::Result<(u64, String)> {
        let mut tee = Sha256Tee::new(io::BufReader::new(from));
        {
            let d = age::Decryptor::new(&mut tee).map_err(io::Error::other)?;
            let mut r = d
                .decrypt(std::iter::once(&self.data as &dyn age::Identity))
                .map_err(io::Error::other)?;
            io::copy(&mut r, to)?;
        }
        // Anything after the age file's end is damage too.
        io::copy(&mut tee, &mut io::sink())?;
        Ok(tee.finish())
    }

    /// Decrypts `src` to `dest` (atomically, `mode`); the size and sha256 of what it read.
    pub fn open_file(&self, src: &Path, dest: &Path, mode: u32) -> io::Result<(u64, String)> {
        let mut done = (0, String::new());
        fsx::write_atomic_with(dest, mode, |f| {
            done = self.open(&mut std::fs::File::open(src)?, f)?;
            Ok(())
        })?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    #[test]
    fn a_piece_sealed_to_a_public_key_opens_with_its_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let me = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let args = SealArgs {
            recipients: vec![me.to_public().to_string()],
            ..SealArgs::default()
        };
        let (sealer, key, rec) = Sealer::new(&args).unwrap();
        assert_eq!(rec.recipients, [me.to_public().to_string()]);
        assert!(!rec.passphrase);
        std::fs::write(dir.path().join(KEY_FILE), &key).unwrap();
        let piece = dir.path().join("piece");
        let (size, sum) = sealer
            .seal_bytes(b"munge key bytes", &piece, 0o600)
            .unwrap();
        let stored = std::fs::read(&piece).unwrap();
        assert_eq!(size, stored.len() as u64);
        assert_eq!(sum, hsw_core::render::terraform::sha256_hex(&stored));
        assert!(
            !stored.windows(5).any(|w| w == b"munge"),
            "the plaintext shows"
        );

        let mine = secret_file(dir.path(), "me.txt", me.to_string().expose_secret());
        let open = OpenArgs {
            identities: vec![mine],
            passphrase_file: None,
        };
        let opener = Opener::new(dir.path(), &rec, &open).unwrap();
        let mut plain = Vec::new();
        let (rsize, rsum) = opener
            .open(&mut std::fs::File::open(&piece).unwrap(), &mut plain)
            .unwrap();
        assert_eq!(plain, b"munge key bytes");
        assert_eq!((rsize, rsum), (size, sum), "open hashes what it read");

        let theirs = secret_file(dir.path(), "other.txt", other.to_string().expose_secret());
        let err = Opener::new(
            dir.path(),
            &rec,
            &OpenArgs {
                identities: vec![theirs],
                passphrase_file: None,
            },
        )
        .unwrap_err();
        assert!(err.contains("does not open the backup"), "{err}");
        let err = Opener::new(dir.path(), &rec, &OpenArgs::default()).unwrap_err();
        assert!(err.contains("--identity FILE"), "{err}");
    }

    #[test]
    fn a_passphrase_opens_the_data_key_and_a_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pass = secret_file(dir.path(), "pass", "correct horse\n");
        let args = SealArgs {
            passphrase_file: Some(pass.clone()),
            ..SealArgs::default()
        };
        let (sealer, key, rec) = Sealer::with_work_factor(&args, Some(2)).unwrap();
        assert!(rec.passphrase && rec.recipients.is_empty());
        std::fs::write(dir.path().join(KEY_FILE), &key).unwrap();
        let src = dir.path().join("disk");
        std::fs::write(&src, vec![7u8; 300_000]).unwrap();
        let piece = dir.path().join("disk.age");
        sealer.seal_file(&src, &piece, 0o600).unwrap();
        let open = OpenArgs {
            identities: Vec::new(),
            passphrase_file: Some(pass),
        };
        let opener = Opener::new(dir.path(), &rec, &open).unwrap();
        let back = dir.path().join("back");
        opener.open_file(&piece, &back, 0o640).unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), vec![7u8; 300_000]);
        assert_eq!(
            std::fs::metadata(&back).unwrap().permissions().mode() & 0o777,
            0o640
        );

        let mut bytes = std::fs::read(&piece).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&piece, &bytes).unwrap();
        let back2 = dir.path().join("back2");
        assert!(opener.open_file(&piece, &back2, 0o600).is_err());
        assert!(!back2.exists(), "a piece that does not open leaves nothing");

        let wrong = secret_file(dir.path(), "wrong", "battery staple\n");
        let err = Opener::new(
            dir.path(),
            &rec,
            &OpenArgs {
                identities: Vec::new(),
                passphrase_file: Some(wrong),
            },
        )
        .unwrap_err();
        assert!(err.contains("does not open"), "{err}");
    }

    #[test]
    fn secret_files_must_be_private_and_keys_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "x\n").unwrap();
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Sealer::new(&SealArgs {
            passphrase_file: Some(pass),
            ..SealArgs::default()
        })
        .unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");

        let empty = secret_file(dir.path(), "empty", "\n");
        let err = Sealer::new(&SealArgs {
            passphrase_file: Some(empty),
            ..SealArgs::default()
        })
        .unwrap_err();
        assert!(err.contains("empty first line"), "{err}");

        let err = Sealer::new(&SealArgs {
            recipients: vec!["ssh-ed25519 AAAA".into()],
            ..SealArgs::default()
        })
        .unwrap_err();
        assert!(
            err.contains("--encrypt-to") && err.contains("age1"),
            "{err}"
        );

        let list = dir.path().join("recipients");
        let me = age::x25519::Identity::generate().to_public().to_string();
        std::fs::write(&list, format!("# team\n\n{me}\nnot-a-key\n")).unwrap();
        let err = Sealer::new(&SealArgs {
            recipients_files: vec![list.clone()],
            ..SealArgs::default()
        })
        .unwrap_err();
        assert!(err.contains("line 4"), "{err}");
        std::fs::write(&list, format!("# team\n{me}\n")).unwrap();
        let (_, _, rec) = Sealer::new(&SealArgs {
            recipients_files: vec![list],
            ..SealArgs::default()
        })
        .unwrap();
        assert_eq!(rec.recipients, [me]);
    }
}
