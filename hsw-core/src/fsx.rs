//! The one way hsw writes a file: [`write_atomic`].
//!
//! The bytes go to a temporary file created exclusively (`O_CREAT | O_EXCL`, a random name, so a planted link
//! or file at a guessable name is never opened) in the target's own directory, with the final mode from
//! creation on (never wider than asked, so a private file is never readable by others, not even while it is
//! written); the file is fsynced and renamed over the final path, and the directory fsynced. A reader sees
//! the old file or the new one, never half of one. rename(2) replaces a link rather than following it, and a
//! link or a directory at the final path is refused before anything is written, with the fix: hsw never
//! writes through, or over, a link.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

/// Writes `bytes` to `path` atomically with permission bits `mode` (see the module text). Refuses a link or a
/// directory at `path` (the error says what to do). The error names no path: callers say what they wrote.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_owned(path, bytes, mode, None)
}

/// [`write_atomic`], and the file gets the owner `(uid, gid)` when given and different from the creator's
/// (changing it needs root: `prepare` keeps the owner of the files it replaces and backs up).
pub fn write_atomic_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    write_with(path, mode, owner, |f| f.write_all(bytes))
}

/// Copies the file `src` to `path` the way [`write_atomic`] writes (streamed, for files too large to hold in
/// memory, such as guest images).
pub fn copy_atomic(src: &Path, path: &Path, mode: u32) -> io::Result<()> {
    write_with(path, mode, None, |f| {
        io::copy(&mut fs::File::open(src)?, f).map(|_| ())
    })
}

/// [`copy_atomic`], hashing what it copies: returns the size and the sha256 (lowercase hex) of the bytes
/// written, read once (for guest disks, which are too large to read twice).
pub fn copy_atomic_sha256(src: &Path, path: &Path, mode: u32) -> io::Result<(u64, String)> {
    let mut done = (0, String::new());
    write_with(path, mode, None, |f| {
        done = copy_sha256(&mut fs::File::open(src)?, f)?;
        Ok(())
    })?;
    Ok(done)
}

/// Copies `from` into `to`, hashing on the way: the size and the sha256 (lowercase hex) of what was copied.
pub fn copy_sha256(from: &mut impl io::Read, to: &mut impl io::Write) -> io::Result<(u64, String)> {
    use io::Read as _;
    let mut tee = Sha256Tee::new(from);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match tee.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
    Ok(tee.finish())
}

/// Everything `from` gives when that is at most `max` bytes; `None` when it gives more (it reads at most
/// `max + 1` bytes, so a huge or endless input costs no more than that). The one bounded read of a small
/// file: callers say what is too large.
pub fn read_at_most(from: impl io::Read, max: u64) -> io::Result<Option<Vec<u8>>> {
    use io::Read as _;
    let mut bytes = Vec::new();
    from.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// [`write_atomic`] of what `fill` writes into the private temporary file: for content streamed through a
/// transform (a backup's encryption). Nothing is at `path` unless `fill` succeeds.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    write_with(path, mode, None, fill)
}

/// A reader or a writer that counts and hashes (sha256) the bytes that go through it, for a hash of what a
/// transform reads or writes (a backup's encrypted pieces) in the same pass.
#[derive(Debug)]
pub struct Sha256Tee<T> {
    inner: T,
    hash: sha2::Sha256,
    size: u64,
}

impl<T> Sha256Tee<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Sha256Tee<T> {
        use sha2::Digest as _;
        Sha256Tee {
            inner,
            hash: sha2::Sha256::new(),
            size: 0,
        }
    }

    /// The size and sha256 (lowercase hex) of what went through.
    pub fn finish(self) -> (u64, String) {
        use sha2::Digest as _;
        (self.size, hex(&self.hash.finalize()))
    }
}

impl<R: io::Read> io::Read for Sha256Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

impl<W: io::Write> io::Write for Sha256Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Lowercase hex of a digest (the one place hsw writes a hash).
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The size and sha256 (lowercase hex) of the file at `path`.
pub fn file_sha256(path: &Path) -> io::Result<(u64, String)> {
    copy_sha256(&mut fs::File::open(path)?, &mut io::sink())
}

/// The one writer: `fill` writes the content into the private temporary file.
fn write_with(
    path: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    check_target(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mode = mode & 0o7777;
    // The creation mode is masked by the umask, so it is never wider than `mode`; the exact bits are set below.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".hsw-tmp")
        .permissions(fs::Permissions::from_mode(mode & 0o777))
        .tempfile_in(dir)?;
    let f = tmp.as_file_mut();
    fill(f)?;
    if let Some((uid, gid)) = owner {
        let meta = f.metadata()?;
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::fchown(&*f, Some(uid), Some(gid))?;
        }
    }
    // After the chown, which clears set-id bits.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    // The temporary file is removed when this fails (the error hands it back, and it drops).
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename itself is durable once the directory is synced; a directory that cannot be opened for
    // that (no read permission) still holds the new file.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Refuses a symbolic link or a directory at `path`; anything else (nothing, a regular file) may be replaced.
fn check_target(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "it is a symbolic link, and hsw never writes through or over a link: remove the link ({}) \
                 and run the command again",
                path.display()
            ),
        )),
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "it is a directory: move the directory {} away and run the command again",
                path.display()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_bounded_read_takes_up_to_its_bound_and_no_more() {
        assert_eq!(read_at_most(&b"abc"[..], 3).unwrap().unwrap(), b"abc");
        assert!(read_at_most(&b"abcd"[..], 3).unwrap().is_none());
        // An endless input: read_at_most stops after max + 1 bytes.
        assert!(read_at_most(io::repeat(7), 1 << 20).unwrap().is_none());
        let (size, sum) = copy_sha256(&mut &b"abc"[..], &mut io::sink()).unwrap();
        assert_eq!(
            (size, sum.as_str()),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            )
        );
    }

    #[test]
    fn writes_creates_and_replaces_with_the_mode_asked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode_of(&p), 0o600);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode_of(&p), 0o640);
        // Nothing but the file is left in the directory.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_link_at_the_final_path_is_refused_and_its_target_untouched() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let p = d.path().join("f");
        symlink(&victim, &p).unwrap();
        let e = write_atomic(&p, b"evil", 0o644).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(e.to_string().contains("remove the link"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        // A dangling link is refused too (it would otherwise create its target).
        let dangling = d.path().join("g");
        symlink(d.path().join("nowhere"), &dangling).unwrap();
        assert!(write_atomic(&dangling, b"x", 0o644).is_err());
        assert!(!d.path().join("nowhere").exists());
    }

    #[test]
    fn copies_stream_the_same_way() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::write(&src, vec![7u8; 1 << 20]).unwrap();
        let dest = d.path().join("dest");
        copy_atomic(&src, &dest, 0o600).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), fs::read(&src).unwrap());
        assert_eq!(mode_of(&dest), 0o600);
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let link = d.path().join("link");
        symlink(&victim, &link).unwrap();
        assert!(copy_atomic(&src, &link, 0o644).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        // A missing source leaves nothing behind.
        assert!(copy_atomic(&d.path().join("none"), &d.path().join("x"), 0o644).is_err());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 4);
    }

    #[test]
    fn links_at_guessable_temporary_names_are_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let p = d.path().join("f");
        // The names the hand-written writers used.
        for planted in [
            ".f.tmp",
            "f.tmp",
            "f.tmp-hsw",
            &format!(".f.hsw-tmp-{}", std::process::id()),
        ] {
            symlink(&victim, d.path().join(planted)).unwrap();
        }
        write_atomic(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn a_directory_at_the_final_path_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::create_dir(&p).unwrap();
        let e = write_atomic(&p, b"x", 0o644).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert!(p.is_dir());
    }

    #[test]
    fn a_missing_directory_is_an_error_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert!(write_atomic(&d.path().join("no/f"), b"x", 0o644).is_err());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_hashed_copy_is_the_copy_and_its_sha256() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::write(&src, b"abc").unwrap();
        let dst = d.path().join("dst");
        let (size, sum) = copy_atomic_sha256(&src, &dst, 0o600).unwrap();
        assert_eq!(size, 3);
        // sha256("abc"), FIPS 180-2's example.
        assert_eq!(
            sum,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fs::read(&dst).unwrap(), b"abc");
        assert_eq!(mode_of(&dst), 0o600);
        assert_eq!(file_sha256(&dst).unwrap(), (3, sum));
        assert!(copy_atomic_sha256(&d.path().join("none"), &dst, 0o600).is_err());
    }
}
