//! The targets of `cargo xtask bench tls`: configs generated into the
//! run's temp dir, all listening on loopback, all with the same PKI and
//! echo upstream.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::tls::{ECHO, pinned, workspace};

/// Where the "everything on" agent exports its records.
pub(super) const COLLECTOR: &str = "127.0.0.1:29100";

pub(super) fn connlog_off(dir: &Path, addr: SocketAddr) -> Result<Command> {
    connlog(dir, addr, PROBE_OFF)
}

/// The agent config's `[probe]` sections of the rows without and with it.
pub(super) const PROBE_OFF: &str = "[probe]\nenabled = false\n";
pub(super) const PROBE_ON: &str = "[probe]\nenabled = true\ninterfaces = [\"lo\"]\n";

pub(super) fn connlog_probe(dir: &Path, addr: SocketAddr) -> Result<Command> {
    connlog(dir, addr, PROBE_ON)
}

pub(super) fn connlog_all(dir: &Path, addr: SocketAddr) -> Result<Command> {
    let extra = format!("{PROBE_ON}[export]\nendpoint = \"http://{COLLECTOR}\"\n");
    connlog(dir, addr, &extra)
}

fn connlog(dir: &Path, addr: SocketAddr, extra: &str) -> Result<Command> {
    connlog_bin(
        &workspace().join("target/release/connlog-agent"),
        dir,
        addr,
        extra,
    )
}

/// `bin` as a target, with the other targets' listener config.
pub(super) fn connlog_bin(
    bin: &Path,
    dir: &Path,
    addr: SocketAddr,
    extra: &str,
) -> Result<Command> {
    let pki = dir.join("../pki");
    let config = format!(
        "[[listener]]\ndistribution_id = \"BENCH\"\nbind = [\"{addr}\"]\n\
         cert = \"{p}/server.pem\"\nkey = \"{p}/server.key\"\nupstream = \"{ECHO}\"\n\
         [listener.mtls]\nmode = \"required\"\ntrust_store = \"{p}/ca.pem\"\n{extra}",
        p = pki.display()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, config)?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(path).env("RUST_LOG", "info");
    Ok(cmd)
}

pub(super) fn nginx(dir: &Path, addr: SocketAddr) -> Result<Command> {
    let p = dir.join("../pki");
    let p = p.display();
    let d = dir.display();
    let config = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         stream {{\n  server {{\n    listen {addr} ssl;\n\
         ssl_certificate {p}/server.pem; ssl_certificate_key {p}/server.key;\n\
         ssl_client_certificate {p}/ca.pem; ssl_verify_client on;\n\
         ssl_protocols TLSv1.3; ssl_session_cache off; ssl_session_tickets off;\n\
         proxy_pass {ECHO};\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config)?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(path)
        .env("OPENSSL_CONF", dir.join("../openssl.cnf"));
    Ok(cmd)
}

pub(super) fn haproxy(dir: &Path, addr: SocketAddr) -> Result<Command> {
    let p = dir.join("../pki");
    let p = p.display();
    let config = format!(
        "global\n  nbthread 1\n  maxconn 8192\n  tune.ssl.default-dh-param 2048\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend fe\n  bind {addr} ssl crt {p}/server-full.pem ca-file {p}/ca.pem verify required ssl-min-ver TLSv1.3 no-tls-tickets\n\
         \x20 default_backend be\n\
         backend be\n  server echo {ECHO}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config)?;
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db")
        .arg("-f")
        .arg(path)
        .env("OPENSSL_CONF", dir.join("../openssl.cnf"));
    Ok(cmd)
}

/// The OpenSSL config nginx and HAProxy run with, so that they do the
/// same TLS work as connlog:
/// - no TLS 1.3 session tickets: without it both send two per handshake
///   even with `ssl_session_tickets off` / `no-tls-tickets` (stateful
///   tickets), CPU that no client of this benchmark ever uses;
/// - the server's suite order, SHA-256 suites first, as connlog's
///   listeners (`ignore_client_order`): TLS_AES_128_GCM_SHA256 with this
///   loader, whose own order starts with TLS_AES_256_GCM_SHA384.
pub(super) fn write_openssl_conf(path: &Path) -> Result<()> {
    std::fs::write(
        path,
        "openssl_conf = openssl_init\n\
         [openssl_init]\nssl_conf = ssl_sect\n\
         [ssl_sect]\nsystem_default = system_default_sect\n\
         [system_default_sect]\nNumTickets = 0\nOptions = ServerPreference\n\
         Ciphersuites = TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384\n",
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// The connlog collector writing JSON files into `dir/out`, on core 1 with
/// the loader and the echo upstream (core 0 is the target's alone);
/// stopped with SIGTERM (it flushes) by [`Collector::stop`].
pub(super) struct Collector(Child);

impl Collector {
    pub(super) fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"{COLLECTOR}\"\n\n\
                 [[sink]]\ntype = \"file\"\nformat = \"json\"\ndir = \"{}\"\nfsync = \"never\"\n",
                dir.join("out").display()
            ),
        )?;
        let mut collector = Command::new(workspace().join("target/release/connlog-collector"));
        collector.arg("--config").arg(&config);
        let child = pinned(1, &collector)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("collector.log"))?)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(COLLECTOR).is_err() {
            if Instant::now() > deadline {
                bail!("collector did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self(child))
    }

    /// Stops it and counts the records it wrote (JSON lines under `dir`).
    pub(super) fn stop(mut self, dir: &Path) -> Result<usize> {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.0.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                bail!("collector did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(count_lines(&dir.join("out")))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn count_lines(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_lines(&p)
            } else {
                std::fs::read_to_string(&p).map_or(0, |s| s.lines().count())
            }
        })
        .sum()
}
