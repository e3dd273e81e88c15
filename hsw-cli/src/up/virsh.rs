//! libvirt as `up` and `down` see it: the one place that runs `virsh` (`virsh -q -c URI ...`, directly: the
//! sandbox's libvirtd socket is a file, reachable from here, and no packet goes anywhere).

use crate::runner::{Cmd, Runner};

/// `virsh` against one libvirt.
#[derive(Debug, Clone, Copy)]
pub struct Virsh<'a> {
    runner: &'a dyn Runner,
    uri: &'a str,
}

impl<'a> Virsh<'a> {
    /// `virsh -c uri`.
    pub fn new(runner: &'a dyn Runner, uri: &'a str) -> Virsh<'a> {
        Virsh { runner, uri }
    }

    /// The standard output of `virsh -q -c URI ARGS`, when it ran and succeeded.
    fn run(&self, args: &[&str]) -> Option<String> {
        let cmd = Cmd::new("virsh").args(["-q", "-c", self.uri]).args(args);
        self.runner
            .capture(&cmd)
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
    }

    /// The standard output of `virsh -q -c URI ARGS`, or why it failed: the first line of its standard error
    /// (or why it did not start).
    pub fn call(&self, args: &[&str]) -> Result<String, String> {
        let cmd = Cmd::new("virsh").args(["-q", "-c", self.uri]).args(args);
        match self.runner.capture(&cmd) {
            Ok(o) if o.status.success() => Ok(o.stdout),
            Ok(o) => Err(format!(
                "virsh {} failed ({}): {}",
                args.join(" "),
                o.status,
                o.stderr.trim().lines().next().unwrap_or("no message")
            )),
            Err(e) => Err(format!("cannot run virsh ({e}); install libvirt-clients")),
        }
    }

    /// libvirt's URI.
    pub fn uri(&self) -> &str {
        self.uri
    }

    /// The non-empty trimmed lines of a listing, those starting with `prefix` (or all).
    fn list(&self, args: &[&str], prefix: Option<&str>) -> Option<Vec<String>> {
        self.run(args).map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && prefix.is_none_or(|p| l.starts_with(p)))
                .map(str::to_owned)
                .collect()
        })
    }

    /// The running domains (`None`: libvirt did not answer).
    pub fn domains(&self) -> Option<Vec<String>> {
        self.list(&["list", "--name"], None)
    }

    /// A domain's first IPv4 address (from `domifaddr`), if it has one yet.
    pub fn domain_address(&self, name: &str) -> Option<String> {
        self.run(&["domifaddr", name]).and_then(|t| {
            t.split_whitespace()
                .find(|w| w.contains('/') && w.contains('.'))
                .map(|w| w.split('/').next().unwrap_or(w).to_owned())
        })
    }

    /// Every running domain with its address (`None` while it boots); `None` when libvirt did not answer.
    pub fn domain_addresses(&self) -> Option<Vec<(String, Option<String>)>> {
        let domains = self.domains()?;
        Some(
            domains
                .into_iter()
                .map(|d| {
                    let a = self.domain_address(&d);
                    (d, a)
                })
                .collect(),
        )
    }

    /// A domain's UUID (empty when libvirt does not know it).
    pub fn uuid_of(&self, name: &str) -> String {
        self.run(&["domuuid", name])
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// The domains and networks libvirt still has (those starting with `prefix`, or all), in words:
    /// `domains a b`, `networks n`.
    pub fn objects(&self, prefix: Option<&str>) -> Vec<String> {
        let mut left = Vec::new();
        let doms = self
            .list(&["list", "--all", "--name"], prefix)
            .unwrap_or_default();
        if !doms.is_empty() {
            left.push(format!("domains {}", doms.join(" ")));
        }
        let nets = self
            .list(&["net-list", "--all", "--name"], prefix)
            .unwrap_or_default();
        if !nets.is_empty() {
            left.push(format!("networks {}", nets.join(" ")));
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;

    const URI: &str = "qemu+unix:///system?socket=/s";

    #[test]
    fn domains_and_addresses() {
        let r = FakeRunner::new();
        r.on(&["list", "--name"], 0, "a\n\nb\n")
            .on(
                &["domifaddr", "a"],
                0,
                " vnet0  52:54:00:aa:bb:cc  ipv4  192.168.100.10/24\n",
            )
            .on(&["domifaddr", "b"], 1, "");
        let v = Virsh::new(&r, URI);
        assert_eq!(
            v.domain_addresses(),
            Some(vec![
                ("a".to_owned(), Some("192.168.100.10".to_owned())),
                ("b".to_owned(), None)
            ])
        );
        assert_eq!(r.argvs()[0], ["virsh", "-q", "-c", URI, "list", "--name"]);
        assert_eq!(r.argvs()[1], ["virsh", "-q", "-c", URI, "domifaddr", "a"]);
    }

    #[test]
    fn no_answer_is_none_or_empty() {
        let r = FakeRunner::new();
        r.on_full(&["virsh"], Some(1), "", "error: failed to connect", None);
        let v = Virsh::new(&r, URI);
        assert_eq!(v.domains(), None);
        assert_eq!(v.domain_addresses(), None);
        assert_eq!(v.uuid_of("a"), "");
        assert!(v.objects(None).is_empty());
        let gone = FakeRunner::new();
        gone.on_full(&["virsh"], None, "", "", None);
        assert_eq!(Virsh::new(&gone, URI).domains(), None);
    }

    #[test]
    fn uuid_and_objects() {
        let r = FakeRunner::new();
        r.on(&["domuuid", "vm"], 0, "1234-5678\n")
            .on(&["list", "--all", "--name"], 0, "hsw-dev-a\nother\n")
            .on(&["net-list", "--all", "--name"], 0, "hsw-dev-net\n");
        let v = Virsh::new(&r, URI);
        assert_eq!(v.uuid_of("vm"), "1234-5678");
        assert_eq!(
            v.objects(Some("hsw-dev-")),
            ["domains hsw-dev-a", "networks hsw-dev-net"]
        );
        assert_eq!(
            v.objects(None),
            ["domains hsw-dev-a other", "networks hsw-dev-net"]
        );
    }
}
