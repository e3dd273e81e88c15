//! The libvirt connection URIs hsw accepts: one policy for `cluster.yaml` (rule `host.libvirt-uri`), the
//! provider's `uri` argument and the CLI's `--libvirt-uri`.
//!
//! libvirt itself accepts far more than hsw needs, and some of it runs programs: the `ext` transport starts
//! the program named in its `command` parameter, and `no_verify=1` turns off an SSH host key check. hsw runs as
//! root, so it accepts only what it supports and tests:
//!
//! | URI | what |
//! |---|---|
//! | `qemu:///system` | the local system libvirtd (the default) |
//! | `qemu+unix:///system?socket=/abs/path` | a local libvirtd on another socket (the sandbox's) |
//! | `qemu+ssh://[user@]host[:port]/system[?keyfile=/abs&known_hosts=/abs]` | a remote host over SSH |
//! | `test:///default` | libvirt's in-process test driver (dry runs, tests) |
//!
//! Any other driver, transport (`ext`, `tcp`, `tls`, `libssh`, `libssh2`), path, or parameter is refused with
//! a sentence that lists what is accepted. Parameter values that are paths must be absolute and plain (letters,
//! digits and `_ . + / -`).

/// Checks a libvirt connection URI against the policy above; the error says what is wrong and what is accepted.
pub fn check_libvirt_uri(value: &str) -> Result<(), String> {
    let refuse = |why: String| {
        Err(format!(
            "`{value}` is not a libvirt URI hsw accepts: {why}. Use qemu:///system, \
             qemu+unix:///system?socket=/path, qemu+ssh://[user@]host[:port]/system (parameters keyfile and \
             known_hosts) or test:///default."
        ))
    };
    if value.len() > 1024 {
        return refuse("it is longer than 1024 characters".into());
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return refuse("it has no `driver://` scheme".into());
    };
    let (driver, transport) = match scheme.split_once('+') {
        Some((d, t)) => (d, Some(t)),
        None => (scheme, None),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (host, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i..]),
        None => (before_query, ""),
    };
    let allowed_params: &[&str] = match (driver, transport) {
        ("test", None) => {
            if !host.is_empty() || path != "/default" {
                return refuse("the test driver is accepted only as test:///default".into());
            }
            &[]
        }
        ("qemu", None) | ("qemu", Some("unix")) => {
            if !host.is_empty() {
                return refuse("a local transport names no host".into());
            }
            if transport.is_some() {
                &["socket"]
            } else {
                &[]
            }
        }
        ("qemu", Some("ssh")) => {
            if !is_ssh_authority(host) {
                return refuse(format!(
                    "`{host}` is not a host for SSH (use [user@]host[:port] with letters, digits, `.`, `-`, `_`)"
                ));
            }
            &["keyfile", "known_hosts"]
        }
        ("qemu", Some(t)) => {
            return refuse(format!(
            "the transport `{t}` is not supported (only unix and ssh; `ext` would run a program)"
        ))
        }
        (d, _) => return refuse(format!("the driver `{d}` is not supported")),
    };
    if driver == "qemu" && path != "/system" {
        return refuse(format!(
            "the path `{path}` is not /system (hsw manages system VMs)"
        ));
    }
    let mut seen = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let Some((name, val)) = pair.split_once('=') else {
            return refuse(format!("the parameter `{pair}` has no value"));
        };
        if !allowed_params.contains(&name) {
            return refuse(format!(
                "the parameter `{name}` is not accepted here{}",
                if allowed_params.is_empty() {
                    String::new()
                } else {
                    format!(" (only {})", allowed_params.join(", "))
                }
            ));
        }
        if seen.contains(&name) {
            return refuse(format!("the parameter `{name}` is given twice"));
        }
        seen.push(name);
        if !is_plain_absolute_path(val) {
            return refuse(format!(
                "the {name} `{val}` is not a plain absolute path (letters, digits and _ . + / -)"
            ));
        }
    }
    if transport == Some("unix") && !seen.contains(&"socket") {
        return refuse("qemu+unix needs its socket parameter".into());
    }
    Ok(())
}

fn is_ssh_authority(host: &str) -> bool {
    let (user, hostport) = match host.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, host),
    };
    let (name, port) = match hostport.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (hostport, None),
    };
    let word = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    user.is_none_or(word)
        && word(name)
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_plain_absolute_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.split('/').any(|c| c == "..")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '/' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_hsw_supports_is_accepted() {
        for ok in [
            "qemu:///system",
            "test:///default",
            "qemu+unix:///system?socket=/run/hsw-sandbox/x/libvirt-sock",
            "qemu+ssh://root@gpu2.lab/system",
            "qemu+ssh://gpu2:2222/system?keyfile=/root/.ssh/id_ed25519&known_hosts=/etc/hsw/known_hosts",
        ] {
            assert_eq!(check_libvirt_uri(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn programs_transports_and_parameters_hsw_does_not_support_are_refused() {
        for (bad, why) in [
            (
                "qemu+ext:///system?command=/bin/sh",
                "`ext` would run a program",
            ),
            ("qemu+tcp://host/system", "transport `tcp`"),
            (
                "qemu+ssh://host/system?no_verify=1",
                "parameter `no_verify`",
            ),
            (
                "qemu+ssh://host/system?command=/bin/sh",
                "parameter `command`",
            ),
            (
                "qemu:///system?socket=/x",
                "parameter `socket` is not accepted here",
            ),
            ("qemu+unix:///system", "needs its socket"),
            (
                "qemu+unix:///system?socket=../x",
                "not a plain absolute path",
            ),
            ("qemu+unix:///system?socket=/a&socket=/b", "given twice"),
            ("qemu:///session", "not /system"),
            ("qemu://host/system", "names no host"),
            ("test:///etc/passwd", "only as test:///default"),
            ("xen:///system", "driver `xen`"),
            ("qemu+ssh://-oProxyCommand=x/system", "not a host for SSH"),
            ("qemu+ssh://a b/system", "not a host for SSH"),
            ("system", "no `driver://`"),
            ("", "no `driver://`"),
        ] {
            let e = check_libvirt_uri(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("Use qemu:///system"), "{bad}: {e}");
        }
    }
}
