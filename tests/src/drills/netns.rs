//! Network namespaces for the network-cut drill: a namespace per "host", a veth pair between
//! two of them with addresses from 198.18.0.0/15 (the range RFC 2544 sets aside for network
//! tests) configured inside the namespaces only, and a cut that drops every packet on the link
//! in both directions while both ends stay up.
//!
//! The cut is a `pfifo` qdisc with a limit of 0 packets on each end's egress: every packet is
//! dropped silently, as by a broken cable or a firewall, so connects hang instead of being
//! refused (what `ip link set down` or a dead process would give). It needs no `netem` module,
//! which minimal kernels lack.
//!
//! Processes run in a namespace through `ip netns exec`; the test's own sockets are opened by
//! threads moved into it with setns(2) ([`enter`], [`NetNs::run`]). The host's namespace is
//! never changed: no address, route, qdisc or link is added to it.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// Runs `ip <args>`; the error names the command and what it printed.
pub fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Moves the calling thread into the namespace at `path`. Sockets it opens afterwards, threads
/// it starts and processes it spawns belong to that namespace.
pub fn enter(path: &std::path::Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    rustix::thread::move_into_link_name_space(f.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))?;
    Ok(())
}

/// A network namespace the test created; deleted on drop (which also deletes its veth ends).
pub struct NetNs {
    /// Its name (`ip netns` name).
    pub name: String,
}

impl NetNs {
    /// Creates namespace `name` (replacing a leftover of the same name) with its loopback up.
    pub fn create(name: &str) -> Result<NetNs, String> {
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        let ns = NetNs { name: name.to_owned() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The file naming it, for [`enter`].
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Runs `ip -n <name> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `f` on a thread inside the namespace and returns its result. A client built there
    /// (a reqwest blocking client starts its I/O thread when built) keeps its sockets there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                enter(&path).unwrap_or_else(|e| panic!("enter {}: {e}", path.display()));
                f()
            })
            .join()
            .expect("thread in the namespace")
        })
    }

    /// `ip netns exec <name> <program>`: a command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// A veth pair joining two namespaces, each end with one address.
pub struct Link {
    a: (String, String),
    b: (String, String),
    cut: bool,
}

impl Link {
    /// Creates `if_a` in `a` with `addr_a` and `if_b` in `b` with `addr_b` (CIDR), both up.
    pub fn create(a: &NetNs, if_a: &str, addr_a: &str, b: &NetNs, if_b: &str, addr_b: &str) -> Result<Link, String> {
        ip(&["link", "add", if_a, "netns", &a.name, "type", "veth", "peer", "name", if_b, "netns", &b.name])?;
        a.ip(&["addr", "add", addr_a, "dev", if_a])?;
        b.ip(&["addr", "add", addr_b, "dev", if_b])?;
        a.ip(&["link", "set", if_a, "up"])?;
        b.ip(&["link", "set", if_b, "up"])?;
        Ok(Link { a: (a.name.clone(), if_a.to_owned()), b: (b.name.clone(), if_b.to_owned()), cut: false })
    }

    /// Drops every packet on the link, both ways; the interfaces stay up.
    pub fn cut(&mut self) -> Result<(), String> {
        for (ns, dev) in [&self.a, &self.b] {
            run("tc", &["-n", ns, "qdisc", "add", "dev", dev, "root", "pfifo", "limit", "0"])?;
        }
        self.cut = true;
        Ok(())
    }

    /// Lets packets through again.
    pub fn restore(&mut self) -> Result<(), String> {
        for (ns, dev) in [&self.a, &self.b] {
            run("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"])?;
        }
        self.cut = false;
        Ok(())
    }

    /// Whether the link is cut now.
    pub fn is_cut(&self) -> bool {
        self.cut
    }
}
