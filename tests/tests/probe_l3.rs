//! Interfaces without an Ethernet header (tun, wireguard): the probe
//! attaches its L3 program variants there, which parse packets starting at
//! the IP header. A tun device in each namespace, bridged by a small Python
//! UDP relay over the veth, carries a real handshake.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use connlog_tests::Netns;
use connlog_tests::probefixture::{PORT, ProbeFixture, cookie, shown, tuple};

const TUN_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 2);
const TUN_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);

/// Creates tun `dev` (no packet info) with `local` ↔ `peer`, then relays
/// its packets as UDP datagrams to `remote`:7999 and back.
const RELAY: &str = r#"
import fcntl, os, select, socket, struct, subprocess, sys
dev, local, peer, bind, remote = sys.argv[1:6]
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, 0x400454ca, struct.pack("16sH", dev.encode(), 0x0001 | 0x1000))
subprocess.run(["ip", "addr", "add", local, "peer", peer, "dev", dev], check=True)
subprocess.run(["ip", "link", "set", dev, "up"], check=True)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((bind, 7999))
print("ready", flush=True)
while True:
    ready, _, _ = select.select([tun, udp], [], [], 60)
    if not ready:
        break
    if tun in ready:
        udp.sendto(os.read(tun, 65535), (remote, 7999))
    if udp in ready:
        os.write(tun, udp.recv(65535))
"#;

/// One relay process; killed on drop (the tun device goes with it).
struct Relay(Child);

impl Relay {
    fn start(
        ns: &Netns,
        dev: &str,
        local: Ipv4Addr,
        peer: Ipv4Addr,
        bind: Ipv4Addr,
        remote: Ipv4Addr,
    ) -> Result<Self> {
        let mut child = ns
            .command("python3")
            .args(["-c", RELAY, dev])
            .args([local, peer, bind, remote].map(|a| a.to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the tun relay")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("relay stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let relay = Relay(child);
        if line.trim() != "ready" {
            bail!("tun relay {dev} did not start");
        }
        Ok(relay)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn handshake_over_a_tun_device_is_parsed_by_the_l3_programs() -> Result<()> {
    let fx = ProbeFixture::start("pr-tun", "3s", "")?;
    let server_relay = Relay::start(
        &fx.pair.server,
        "tuns",
        TUN_SERVER,
        TUN_CLIENT,
        fx.pair.server_v4,
        fx.pair.client_v4,
    )?;
    let client_relay = Relay::start(
        &fx.pair.client,
        "tunc",
        TUN_CLIENT,
        TUN_SERVER,
        fx.pair.client_v4,
        fx.pair.server_v4,
    )?;
    // The agent follows new interfaces; wait until it took the tun.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fx.agent.stderr().contains("interface=tuns") {
        if Instant::now() > deadline {
            bail!("the probe never attached to tuns:\n{}", fx.agent.stderr());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = SocketAddr::new(IpAddr::V4(TUN_SERVER), PORT);
    let listener = fx.pair.server.listen(server)?;
    let client = fx.pair.client.connect(server)?;
    let (accepted, _) = listener.accept()?;
    let evs = fx.exactly(1, Duration::from_secs(5), Duration::from_millis(400))?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "established", "{ev}");
    assert_eq!(
        tuple(ev),
        (shown(client.local_addr()?), shown(accepted.local_addr()?))
    );
    assert_eq!(
        tuple(ev).0,
        format!("{TUN_CLIENT}:{}", client.local_addr()?.port())
    );
    assert_eq!(ev["cookie"].as_u64(), Some(cookie(&accepted)?));
    // The SYN was seen, at TC ingress on tuns: only the L3 program can
    // parse a packet that starts at its IP header.
    let (syn_at, established_at) = (ev["syn_at"].as_u64(), ev["established_at"].as_u64());
    assert!(syn_at < established_at, "{ev}");
    drop((client_relay, server_relay));
    Ok(())
}
