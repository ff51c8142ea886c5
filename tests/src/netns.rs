//! Network namespaces for tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with loopback up. The name is made unique per
    /// process and call, prefixed with `tag` so a leftover is easy to trace.
    pub fn new(tag: &str) -> Result<Self> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cl-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, for `nsenter --net=…` or `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A command that runs inside this namespace. Uses `nsenter --net` rather
    /// than `ip netns exec`, which remounts /sys and hides tracefs.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `argv` inside the namespace; fails with its stderr if it fails.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        let (program, args) = argv.split_first().context("empty command")?;
        run(self.command(program).args(args))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// Two namespaces, `client` and `server`, joined by a veth pair with
/// `198.18.<n>.2/24` + `fd00:<n>::2/64` on the client side and `.1` / `::1`
/// on the server side. `n` is unique per pair within the process.
#[derive(Debug)]
pub struct Pair {
    pub client: Netns,
    pub server: Netns,
    pub client_v4: Ipv4Addr,
    pub server_v4: Ipv4Addr,
    pub client_v6: Ipv6Addr,
    pub server_v6: Ipv6Addr,
    /// Name of the veth interface inside the server namespace.
    pub server_if: String,
    /// Name of the veth interface inside the client namespace.
    pub client_if: String,
}

impl Pair {
    pub fn new(tag: &str) -> Result<Self> {
        static SUBNET: AtomicU32 = AtomicU32::new(0);
        let n = (SUBNET.fetch_add(1, Ordering::Relaxed) % 250) as u8 + 1;
        let client = Netns::new(&format!("{tag}-c"))?;
        let server = Netns::new(&format!("{tag}-s"))?;
        let (client_if, server_if) = ("veth-c".to_string(), "veth-s".to_string());
        // Create the pair inside the server namespace, then move one end.
        server.exec(&[
            "ip", "link", "add", &server_if, "type", "veth", "peer", "name", &client_if,
        ])?;
        server.exec(&["ip", "link", "set", &client_if, "netns", client.name()])?;

        let client_v4 = Ipv4Addr::new(198, 18, n, 2);
        let server_v4 = Ipv4Addr::new(198, 18, n, 1);
        let client_v6 = Ipv6Addr::new(0xfd00, u16::from(n), 0, 0, 0, 0, 0, 2);
        let server_v6 = Ipv6Addr::new(0xfd00, u16::from(n), 0, 0, 0, 0, 0, 1);
        for (ns, ifname, v4, v6) in [
            (&client, &client_if, client_v4, client_v6),
            (&server, &server_if, server_v4, server_v6),
        ] {
            ns.exec(&["ip", "addr", "add", &format!("{v4}/24"), "dev", ifname])?;
            ns.exec(&[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ])?;
            ns.exec(&["ip", "link", "set", ifname, "up"])?;
        }
        Ok(Pair {
            client,
            server,
            client_v4,
            server_v4,
            client_v6,
            server_v6,
            server_if,
            client_if,
        })
    }

    pub fn server_ip(&self, v6: bool) -> IpAddr {
        if v6 {
            self.server_v6.into()
        } else {
            self.server_v4.into()
        }
    }

    pub fn client_ip(&self, v6: bool) -> IpAddr {
        if v6 {
            self.client_v6.into()
        } else {
            self.client_v4.into()
        }
    }
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_connects_over_v4_and_v6() -> Result<()> {
        let pair = Pair::new("selftest")?;
        let v4 = pair.server_v4.to_string();
        let v6 = pair.server_v6.to_string();
        pair.client.exec(&["ping", "-c", "1", "-W", "2", &v4])?;
        pair.client
            .exec(&["ping", "-6", "-c", "1", "-W", "2", &v6])?;
        let path = pair.client.path();
        drop(pair);
        assert!(!path.exists(), "namespace removed on drop");
        Ok(())
    }
}
