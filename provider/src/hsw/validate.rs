//! Input checks shared by the provider block, the resources and the XML renderers. Pure functions: no IO.
//!
//! Everything the provider puts into libvirt XML, a file name or a command's argument vector passes one of these
//! first, so nothing from a configuration can inject XML, escape the pool directory or reach a shell. Each check
//! returns a sentence saying what is wrong and what is allowed; callers attach the attribute path.

use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

/// The longest name accepted for networks and VMs.
pub const MAX_NAME: usize = 64;

/// Characters a shell gives meaning to. None of them is accepted in names, paths or URIs.
pub const SHELL_METACHARACTERS: &[char] = &[
    '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', ' ', '\t', '\n', '\r', '*', '?',
    '[', ']', '#', '~', '!', '{', '}', '^',
];

/// Checks a libvirt object name: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`.
pub fn name(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || value.len() > MAX_NAME {
        return Err(format!(
            "{} is not a valid name: use 1 to {MAX_NAME} letters, digits, '_', '.' or '-', starting with a letter or digit.",
            quote(value)
        ));
    }
    Ok(())
}

/// Checks a Linux bridge name: a [`name`] of at most 15 characters (the kernel's IFNAMSIZ less one).
pub fn bridge(value: &str) -> Result<(), String> {
    name(value)?;
    if value.len() > 15 {
        return Err(format!(
            "{} is longer than 15 characters, the most Linux allows for an interface name.",
            quote(value)
        ));
    }
    Ok(())
}

/// Checks a libvirt connection URI: hsw's one policy ([`hsw_core::config::uri`]), the same the configuration
/// file and the CLI apply (qemu:///system, qemu+unix with a socket, qemu+ssh, test:///default; no `ext`).
pub fn uri(value: &str) -> Result<(), String> {
    hsw_core::config::uri::check_libvirt_uri(value)
}

/// Checks an absolute path lexically: it starts with `/`, has no `.` or `..` component and no empty component,
/// and uses only `A-Z a-z 0-9 _ . + / -` (no shell metacharacters, no `:` or `,` that QEMU would read as options).
pub fn absolute_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err(format!(
            "{} is not an absolute path: start it with '/'.",
            quote(value)
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '/' | '-')))
    {
        return Err(format!(
            "{} contains {c:?}: paths may only use letters, digits and _ . + / -.",
            quote(value)
        ));
    }
    if (value.len() > 1 && value.ends_with('/')) || value.contains("//") {
        return Err(format!(
            "{} has an empty path component: remove the extra '/'.",
            quote(value)
        ));
    }
    let p = Path::new(value);
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || value.split('/').any(|s| s == "." || s == "..")
    {
        return Err(format!(
            "{} contains a '.' or '..' component: give the path without them.",
            quote(value)
        ));
    }
    if value.len() > 4000 {
        return Err("The path is longer than 4000 characters.".into());
    }
    Ok(())
}

/// Checks that `path` (already checked with [`absolute_path`]) lies inside `pool_dir`, lexically. The symbolic
/// link check happens at apply time on the canonical paths (see [`inside_canonical`]).
pub fn inside_pool(path: &str, pool_dir: &Path) -> Result<(), String> {
    if !Path::new(path).starts_with(pool_dir) || Path::new(path) == pool_dir {
        return Err(format!(
            "{} is not inside the provider's pool_dir {}: put the file there (or set pool_dir).",
            quote(path),
            quote(&pool_dir.display().to_string())
        ));
    }
    Ok(())
}

/// Checks that the canonical form of a path (symbolic links resolved) is inside the canonical pool directory.
pub fn inside_canonical(
    original: &str,
    canonical: &Path,
    canonical_pool: &Path,
) -> Result<(), String> {
    if !canonical.starts_with(canonical_pool) || canonical == canonical_pool {
        return Err(format!(
            "{} resolves to {}, outside the pool directory {} (through a symbolic link): \
             copy the file into the pool directory instead of linking to it.",
            quote(original),
            quote(&canonical.display().to_string()),
            quote(&canonical_pool.display().to_string())
        ));
    }
    Ok(())
}

/// Checks a host name or DNS domain: dot-separated labels of letters, digits and `-`, each 1–63 characters, not
/// starting or ending with `-`, 253 characters at most.
pub fn hostname(value: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if value.is_empty() || value.len() > 253 || !value.split('.').all(label_ok) {
        return Err(format!(
            "{} is not a valid host name: use dot-separated labels of letters, digits and '-' (1 to 63 characters \
             each, not starting or ending with '-').",
            quote(value)
        ));
    }
    Ok(())
}

/// Checks a MAC address `xx:xx:xx:xx:xx:xx` (hex, either case) that is unicast. Returns it in lower case.
pub fn mac(value: &str) -> Result<String, String> {
    let parts: Vec<&str> = value.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    let first = parts
        .first()
        .and_then(|p| u8::from_str_radix(p, 16).ok())
        .unwrap_or(1);
    if !ok || first & 1 == 1 {
        return Err(format!(
            "{} is not a unicast MAC address: write six hex pairs separated by ':', such as 52:54:00:12:34:56.",
            quote(value)
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// Checks a PCI address `dddd:bb:ss.f` (domain, bus, slot ≤ 1f, function ≤ 7). Returns (domain, bus, slot, function).
pub fn pci_address(value: &str) -> Result<(u16, u8, u8, u8), String> {
    let err = || {
        format!(
            "{} is not a PCI address: write domain:bus:slot.function in hex, such as 0000:3b:00.0.",
            quote(value)
        )
    };
    let (dom, rest) = value.split_once(':').ok_or_else(err)?;
    let (bus, rest) = rest.split_once(':').ok_or_else(err)?;
    let (slot, func) = rest.split_once('.').ok_or_else(err)?;
    let hex = |s: &str, len: usize| {
        (s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
    };
    let (Some(d), Some(b), Some(s), Some(f)) =
        (hex(dom, 4), hex(bus, 2), hex(slot, 2), hex(func, 1))
    else {
        return Err(err());
    };
    if s > 0x1f || f > 7 {
        return Err(err());
    }
    Ok((
        u16::try_from(d).map_err(|_| err())?,
        u8::try_from(b).map_err(|_| err())?,
        u8::try_from(s).map_err(|_| err())?,
        u8::try_from(f).map_err(|_| err())?,
    ))
}

/// Checks a UUID in its canonical 8-4-4-4-12 hex form. Returns it in lower case.
pub fn uuid(value: &str) -> Result<String, String> {
    let groups: Vec<&str> = value.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(format!(
            "{} is not a UUID: write it as 8-4-4-4-12 hex digits, such as c2177883-f1bb-47f0-914d-32a22e3a8804.",
            quote(value)
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// Checks an IPv4 address.
pub fn ipv4(value: &str) -> Result<Ipv4Addr, String> {
    value
        .parse()
        .map_err(|_| format!("{} is not an IPv4 address such as 10.0.0.5.", quote(value)))
}

/// Checks a kernel command line: printable ASCII, 4096 characters at most, none of `" ' ` $ ; & | < > \`.
pub fn cmdline(value: &str) -> Result<(), String> {
    if value.len() > 4096 {
        return Err("The kernel command line is longer than 4096 characters.".into());
    }
    if let Some(c) = value.chars().find(|c| {
        !(' '..='~').contains(c)
            || matches!(
                c,
                '"' | '\'' | '`' | '$' | ';' | '&' | '|' | '<' | '>' | '\\'
            )
    }) {
        return Err(format!(
            "The kernel command line contains {c:?}: use printable characters other than \" ' ` $ ; & | < > \\."
        ));
    }
    Ok(())
}

/// Checks an SSH public key line: one line of printable characters starting with a key type.
pub fn ssh_key(value: &str) -> Result<(), String> {
    // `file("key.pub")` keeps the final newline: accept it (the key is written trimmed).
    let value = value.strip_suffix('\n').unwrap_or(value);
    let value = value.strip_suffix('\r').unwrap_or(value);
    let known = ["ssh-", "ecdsa-", "sk-"];
    if value.len() > 16384
        || !known.iter().any(|k| value.starts_with(k))
        || value.chars().any(|c| !(' '..='~').contains(&c))
    {
        return Err(
            "The SSH public key is not one line starting with its type (ssh-ed25519, ssh-rsa, ecdsa-...): \
             paste the content of the .pub file."
                .into(),
        );
    }
    Ok(())
}

/// Checks free text that goes into a file (cloud-init data): no NUL byte, at most 1 MiB.
pub fn file_text(value: &str) -> Result<(), String> {
    if value.contains('\0') || value.len() > 1 << 20 {
        return Err("The text contains a NUL byte or is larger than 1 MiB.".into());
    }
    Ok(())
}

/// Normalises a path lexically (drops `.` components, resolves `..` against what precedes it).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Quotes a value for a message, shortening very long ones.
pub fn quote(value: &str) -> String {
    if value.chars().count() > 80 {
        let short: String = value.chars().take(77).collect();
        format!("{:?}", short + "...")
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "web-1", "A.b_c", &"x".repeat(64)] {
            assert!(name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "a b",
            "a<b",
            "a'b",
            "a&b",
            "a/b",
            &"x".repeat(65),
            "é",
        ] {
            assert!(name(bad).is_err(), "{bad}");
        }
        assert!(bridge("hswbr0").is_ok());
        assert!(bridge("abcdefghijklmnop").is_err());
    }

    #[test]
    fn uris() {
        for ok in [
            "qemu:///system",
            "test:///default",
            "qemu+unix:///system?socket=/run/hsw-sandbox/libvirt-sock",
            "qemu+ssh://root@host/system",
        ] {
            assert!(uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "system",
            "qemu:///system; rm -rf /",
            "qemu:///s$(x)",
            "qemu:///a?b=1&c=2",
            "qemu:///a b",
        ] {
            assert!(uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(absolute_path("/var/lib/hsw/images/base.qcow2").is_ok());
        for bad in [
            "base.qcow2",
            "/a/../b",
            "/a/./b",
            "/a//b",
            "/a/b/",
            "/a/b;c",
            "/a/$(id)",
            "/a/b c",
            "/a/<x>",
            "/a/nbd:x",
            "/a/b,c",
        ] {
            assert!(absolute_path(bad).is_err(), "{bad}");
        }
        let pool = Path::new("/pool");
        assert!(inside_pool("/pool/a.qcow2", pool).is_ok());
        assert!(inside_pool("/pool", pool).is_err());
        assert!(inside_pool("/poolx/a", pool).is_err());
        assert!(inside_pool("/etc/passwd", pool).is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(mac("52:54:00:AB:cd:01").unwrap(), "52:54:00:ab:cd:01");
        assert!(mac("01:00:5e:00:00:01").is_err(), "multicast");
        assert!(mac("52:54:00:ab:cd").is_err());
        assert_eq!(pci_address("0000:3b:00.0").unwrap(), (0, 0x3b, 0, 0));
        assert!(pci_address("0000:3b:20.0").is_err());
        assert!(pci_address("0000:3b:00.8").is_err());
        assert!(pci_address("3b:00.0").is_err());
        assert!(uuid("C2177883-f1bb-47f0-914d-32a22e3a8804").is_ok());
        assert!(uuid("c2177883-f1bb-47f0-914d").is_err());
        assert!(hostname("node-1.cluster.local").is_ok());
        assert!(hostname("-a").is_err());
        assert!(hostname("a_b").is_err());
        assert!(cmdline("root=/dev/vda rw console=ttyS0,115200").is_ok());
        assert!(cmdline("root=/dev/vda; reboot").is_err());
        assert!(ssh_key("ssh-ed25519 AAAA user@host").is_ok());
        assert!(ssh_key("ssh-ed25519 AAAA\nuser").is_err());
        assert!(ssh_key("ssh-ed25519 AAAA user@host\n").is_ok());
    }
}
