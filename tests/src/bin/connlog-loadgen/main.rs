//! `connlog-loadgen`: the TLS benchmark's load generator, echo upstream
//! and PKI writer (used by `cargo xtask bench tls`).
//!
//! Every connection is a full TLS 1.3 handshake (no resumption) with an
//! ECDSA P-256 client certificate, then one echo round trip of one byte.
//! Runs on one thread (pin it with `taskset`).

mod load;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use connlog_tests::pki::{self, Ca, LeafSpec, pem};

#[derive(Debug, Parser)]
#[command(about = "TLS load generator for connlog benchmarks")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write ca.pem, server.pem/.key (+ server-full.pem for HAProxy),
    /// client.pem/.key (ECDSA P-256) and untrusted.pem/.key (a client
    /// certificate of another root) into DIR.
    Pki { dir: PathBuf },
    /// Proves a target does what the benchmark claims: a full TLS 1.3
    /// handshake with the bench client certificate and an echo, refusal
    /// without a certificate and with an untrusted one. Prints one JSON
    /// line (what was negotiated, tickets sent); exits non-zero otherwise.
    Check {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long)]
        pki: PathBuf,
    },
    /// Echo every byte back until EOF (the benchmark's upstream).
    Echo { listen: SocketAddr },
    /// Full handshakes plus one echo round trip, `concurrency` at a time,
    /// for `secs` seconds; prints one JSON line of results.
    Run {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long)]
        pki: PathBuf,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// Open `count` connections (handshake + one echo) and keep them idle;
    /// prints `ready N`, then holds them until stdin closes.
    Idle {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long)]
        pki: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.cmd {
        Cmd::Pki { dir } => write_pki(&dir),
        Cmd::Echo { listen } => rt.block_on(load::echo(listen)),
        Cmd::Run {
            connect,
            pki,
            concurrency,
            secs,
        } => {
            let client = std::rc::Rc::new(load::Client::load(&pki)?);
            let report = rt.block_on(load::run(client, connect, concurrency, secs))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Cmd::Check { connect, pki } => rt.block_on(check(connect, &pki)),
        Cmd::Idle {
            connect,
            pki,
            count,
        } => {
            let client = load::Client::load(&pki)?;
            rt.block_on(load::idle(&client, connect, count))
        }
    }
}

async fn check(addr: SocketAddr, pki: &std::path::Path) -> Result<()> {
    let good = load::Client::load(pki)?;
    let negotiated = good
        .probe(addr)
        .await
        .context("handshake with the bench client certificate")?;
    for (name, identity) in [("no certificate", None), ("untrusted", Some("untrusted"))] {
        let client = load::Client::with_identity(pki, identity)?;
        if client.probe(addr).await.is_ok() {
            anyhow::bail!(
                "{addr} accepted a client with {name}: client certificates are not verified"
            );
        }
    }
    let report = serde_json::json!({
        "protocol": negotiated.protocol,
        "cipher": negotiated.cipher,
        "group": negotiated.group,
        "tickets": good.tickets(),
        "refuses_no_certificate": true,
        "refuses_untrusted": true,
    });
    println!("{report}");
    Ok(())
}

fn write_pki(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let root = Ca::root("connlog bench root")?;
    let server = pki::write_server_files(dir, &root)?;
    let client = root.leaf(&LeafSpec::default())?;
    let untrusted = Ca::root("connlog bench other root")?.leaf(&LeafSpec::default())?;
    // HAProxy wants the certificate and its key in one file.
    let cert = pem("CERTIFICATE", &[&server.der]);
    let key = pem("PRIVATE KEY", &[&server.key_pkcs8]);
    pki::write(dir, "server-full.pem", &format!("{cert}{key}"))?;
    pki::write(dir, "client.pem", &pem("CERTIFICATE", &[&client.der]))?;
    pki::write(dir, "client.key", &pem("PRIVATE KEY", &[&client.key_pkcs8]))?;
    pki::write(dir, "untrusted.pem", &pem("CERTIFICATE", &[&untrusted.der]))?;
    pki::write(
        dir,
        "untrusted.key",
        &pem("PRIVATE KEY", &[&untrusted.key_pkcs8]),
    )?;
    Ok(())
}
