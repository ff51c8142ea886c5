//! The kernel probe end to end: a real agent in the
//! server namespace, real handshakes from the client namespace, exact
//! TcpEvents on `--print-events`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use connlog_tests::kernel::Kernel;
use connlog_tests::probefixture::{PORT, ProbeFixture, cookie, shown, tuple};
use serde_json::Value;

const QUIET: Duration = Duration::from_millis(400);
const WITHIN: Duration = Duration::from_secs(5);

fn u64_of(ev: &Value, key: &str) -> u64 {
    ev[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {ev}"))
}

/// One Established whose cookie is the accepted socket's (0 where the
/// kernel's tracing programs cannot read cookies).
fn established(tag: &str, v6: bool) -> Result<()> {
    let fx = ProbeFixture::start(tag, "3s", "")?;
    let listener = fx.listen(v6, PORT)?;
    let client = fx.connect(v6, PORT)?;
    let (accepted, _) = listener.accept()?;
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "established", "{ev}");
    assert_eq!(
        tuple(ev),
        (shown(client.local_addr()?), shown(accepted.local_addr()?))
    );
    assert_eq!(
        u64_of(ev, "cookie"),
        Kernel::current().event_cookie(cookie(&accepted)?)
    );
    assert!(u64_of(ev, "syn_at") < u64_of(ev, "established_at"), "{ev}");
    assert_eq!(u64_of(ev, "synack_retransmits"), 0);
    Ok(())
}

#[test]
fn connect_gives_one_established_with_the_accepted_cookie() -> Result<()> {
    established("pr-est4", false)
}

#[test]
fn connect_v6_gives_one_established_with_the_accepted_cookie() -> Result<()> {
    established("pr-est6", true)
}

/// A dual-stack listener (`[::]`) accepting IPv4: the child socket is
/// AF_INET6 with v4-mapped addresses, the packets are IPv4; the kernel's
/// attempt key is the same for both, so the SYN time is the SYN's.
#[test]
fn ipv4_on_a_dual_stack_listener_keeps_its_syn_time() -> Result<()> {
    let fx = ProbeFixture::start("pr-dual", "3s", "")?;
    let any = std::net::SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), PORT);
    let listener = fx.pair.server.listen(any)?;
    let client = fx.connect(false, PORT)?;
    let (accepted, _) = listener.accept()?;
    assert!(accepted.local_addr()?.is_ipv6(), "v4-mapped child");
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "established", "{ev}");
    assert_eq!(
        tuple(ev),
        (
            shown(client.local_addr()?),
            shown(fx.server_addr(false, PORT))
        )
    );
    assert_eq!(
        u64_of(ev, "cookie"),
        Kernel::current().event_cookie(cookie(&accepted)?)
    );
    assert!(u64_of(ev, "syn_at") < u64_of(ev, "established_at"), "{ev}");
    Ok(())
}

/// The client's final ACK never arrives.
fn syn_ack_unanswered(tag: &str, v6: bool) -> Result<()> {
    let fx = ProbeFixture::start(tag, "1500ms", "")?;
    let _listener = fx.listen(v6, PORT)?;
    fx.drop_client_pure_acks()?;
    // The client believes it is connected; the server stays in SYN_RECV and
    // re-sends its SYN-ACK after 1 s.
    let client = fx.connect(v6, PORT)?;
    let evs = fx.exactly(1, WITHIN, Duration::from_millis(1200))?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "failed", "{ev}");
    assert_eq!(ev["code"], "TcpTimeout");
    assert_eq!(ev["detail"], "syn-ack-unanswered");
    assert_eq!(tuple(ev).0, shown(client.local_addr()?));
    assert!(u64_of(ev, "synack_retransmits") >= 1, "{ev}");
    assert!(
        u64_of(ev, "failed_at") - u64_of(ev, "syn_at") >= 1_500_000_000,
        "{ev}"
    );
    assert_eq!(ev["cookie"], Value::Null);
    // The client gives up after the timeout was reported: its RST resets
    // the request socket (a client RST in SYN_RECV for the kernel), but the
    // attempt was reported once already, so nothing more.
    connlog_tests::reset(client)?;
    fx.exactly(0, WITHIN, QUIET)?;
    Ok(())
}

#[test]
fn unanswered_syn_ack_gives_one_timeout() -> Result<()> {
    syn_ack_unanswered("pr-to4", false)
}

#[test]
fn unanswered_syn_ack_v6_gives_one_timeout() -> Result<()> {
    syn_ack_unanswered("pr-to6", true)
}

/// A raw SYN; the client kernel resets the SYN-ACK.
fn client_rst_in_syn_recv(tag: &str, v6: bool) -> Result<()> {
    let fx = ProbeFixture::start(tag, "3s", "")?;
    let _listener = fx.listen(v6, PORT)?;
    fx.scapy_syn(v6, 40123, 1_000_000)?;
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "failed", "{ev}");
    assert_eq!(ev["code"], "TcpError");
    assert_eq!(ev["detail"], "client-rst-in-syn-recv");
    let client = std::net::SocketAddr::new(fx.pair.client_ip(v6), 40123);
    assert_eq!(tuple(ev), (shown(client), shown(fx.server_addr(v6, PORT))));
    assert_eq!(u64_of(ev, "synack_retransmits"), 0);
    assert!(u64_of(ev, "syn_at") < u64_of(ev, "failed_at"));
    Ok(())
}

#[test]
fn client_rst_in_syn_recv_is_tcp_error() -> Result<()> {
    client_rst_in_syn_recv("pr-rst4", false)
}

#[test]
fn client_rst_in_syn_recv_v6_is_tcp_error() -> Result<()> {
    client_rst_in_syn_recv("pr-rst6", true)
}

/// After a syncookie SYN-ACK there is no request socket: the client's RST
/// reaches the listener itself (`kfree_skb` reason TCP_RESET, `rx_sk` the
/// listener) and still ends the attempt as a client RST.
#[test]
fn client_rst_after_a_syncookie_syn_ack_is_tcp_error() -> Result<()> {
    let fx = ProbeFixture::start("pr-ckrst", "3s", "")?;
    fx.pair
        .server
        .exec(&["sysctl", "-qw", "net.ipv4.tcp_syncookies=2"])?;
    let _listener = fx.listen(false, PORT)?;
    fx.scapy_syn(false, 40124, 2_000_000)?;
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "failed", "{ev}");
    assert_eq!(ev["code"], "TcpError");
    assert_eq!(ev["detail"], "client-rst-in-syn-recv");
    assert_eq!(tuple(ev).0, format!("{}:40124", fx.pair.client_v4));
    assert_eq!(u64_of(ev, "synack_retransmits"), 0);
    Ok(())
}

/// Backlog 1 holds two connections; the third final ACK overflows.
/// With `tcp_abort_on_overflow` the kernel answers it with an RST instead.
fn overflow(tag: &str, abort: bool, detail: String) -> Result<()> {
    let fx = ProbeFixture::start(tag, "5s", "")?;
    if abort {
        fx.pair
            .server
            .exec(&["sysctl", "-qw", "net.ipv4.tcp_abort_on_overflow=1"])?;
    }
    let listener = fx.listen(false, PORT)?;
    rustix::net::listen(&listener, 1)?;
    fx.drop_client_pure_acks()?;
    // Data segments carry PSH|ACK, so they pass the rule and complete the
    // handshake on the server.
    let mut a = fx.connect(false, PORT)?;
    a.write_all(b"a")?;
    let first = fx.exactly(1, WITHIN, Duration::ZERO)?;
    assert_eq!(first[0]["event"], "established", "{:?}", first);
    let mut b = fx.connect(false, PORT)?;
    let mut c = fx.connect(false, PORT)?;
    c.write_all(b"c")?;
    let second = fx.exactly(1, WITHIN, Duration::ZERO)?;
    assert_eq!(second[0]["event"], "established");
    assert_eq!(tuple(&second[0]).0, shown(c.local_addr()?));
    b.write_all(b"b")?;
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "failed", "{ev}");
    assert_eq!(ev["code"], "TcpError");
    assert_eq!(ev["detail"], detail);
    assert_eq!(
        tuple(ev),
        (shown(b.local_addr()?), shown(fx.server_addr(false, PORT)))
    );
    Ok(())
}

#[test]
fn accept_queue_overflow_is_tcp_error() -> Result<()> {
    overflow("pr-ovf", false, "accept-queue-overflow".into())
}

/// The kernel resets the overflowing request from `tcp_check_req`'s
/// embryonic-reset path, whose `enum sk_rst_reason` is INVALID_SYN (on
/// kernels that give reasons).
#[test]
fn abort_on_overflow_is_server_rst_with_the_kernel_reason() -> Result<()> {
    overflow(
        "pr-abort",
        true,
        Kernel::current().server_rst("INVALID_SYN"),
    )
}

/// An RST right after the handshake, before any byte.
#[test]
fn client_reset_after_handshake_is_visible_with_the_cookie() -> Result<()> {
    let fx = ProbeFixture::start("pr-rstest", "3s", "")?;
    let listener = fx.listen(false, PORT)?;
    let client = fx.connect(false, PORT)?;
    let (accepted, _) = listener.accept()?;
    let expected = Kernel::current().event_cookie(cookie(&accepted)?);
    let client_addr = shown(client.local_addr()?);
    connlog_tests::reset(client)?;
    let evs = fx.exactly(2, WITHIN, QUIET)?;
    assert_eq!(evs[0]["event"], "established", "{evs:?}");
    assert_eq!(evs[1]["event"], "reset", "{evs:?}");
    for ev in &evs {
        assert_eq!(u64_of(ev, "cookie"), expected, "{ev}");
        assert_eq!(tuple(ev).0, client_addr);
    }
    assert!(u64_of(&evs[1], "at") > u64_of(&evs[0], "established_at"));
    Ok(())
}

/// Ports the agent does not watch give nothing, with or without a
/// listener; the watched port right after gives exactly its event.
#[test]
fn unwatched_ports_give_no_events() -> Result<()> {
    let fx = ProbeFixture::start("pr-unw", "3s", "")?;
    let other = fx.listen(false, PORT + 1)?;
    let _c = fx.connect(false, PORT + 1)?;
    let _a = other.accept()?;
    assert!(fx.connect(false, PORT + 2).is_err(), "no listener: refused");
    assert!(fx.events_until_quiet(Duration::from_millis(600)).is_empty());

    let listener = fx.listen(false, PORT)?;
    let _c = fx.connect(false, PORT)?;
    let _a = listener.accept()?;
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    assert_eq!(evs[0]["event"], "established");
    Ok(())
}

/// Tracepoints are global: traffic on the same port in another namespace
/// must not reach this agent.
#[test]
fn other_namespaces_are_not_reported() -> Result<()> {
    let fx = ProbeFixture::start("pr-ns", "3s", "")?;
    let elsewhere = connlog_tests::Pair::new("pr-ns2")?;
    let addr = std::net::SocketAddr::new(elsewhere.server_v4.into(), PORT);
    let listener = elsewhere.server.listen(addr)?;
    let c = elsewhere.client.connect(addr)?;
    let _a = listener.accept()?;
    connlog_tests::reset(c)?;
    assert!(fx.events_until_quiet(Duration::from_millis(600)).is_empty());

    let listener = fx.listen(false, PORT)?;
    let _c = fx.connect(false, PORT)?;
    let _a = listener.accept()?;
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    assert_eq!(evs[0]["event"], "established");
    Ok(())
}

/// The same 4-tuple twice is two attempts.
#[test]
fn reused_tuple_is_two_attempts() -> Result<()> {
    let fx = ProbeFixture::start("pr-reuse", "3s", "")?;
    let listener = fx.listen(false, PORT)?;
    let mut cookies = Vec::new();
    for attempt in 0..2 {
        // The client socket is CLOEXEC and `reset` aborts it at once: a
        // copy of its descriptor in a process another test starts cannot
        // hold the tuple (it did, as EADDRNOTAVAIL on the reuse, before).
        let client = fx
            .connect_from(false, 41000)
            .with_context(|| format!("connection {} from port 41000", attempt + 1))?;
        let (accepted, _) = listener.accept()?;
        cookies.push(cookie(&accepted)?);
        // An RST leaves no TIME_WAIT, so the tuple is free again at once.
        connlog_tests::reset(client)?;
        drop(accepted);
    }
    let evs = fx.exactly(4, WITHIN, QUIET)?;
    let kinds: Vec<&str> = evs
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["established", "reset", "established", "reset"]);
    assert_ne!(cookies[0], cookies[1]);
    let kernel = Kernel::current();
    assert_eq!(u64_of(&evs[0], "cookie"), kernel.event_cookie(cookies[0]));
    assert_eq!(u64_of(&evs[2], "cookie"), kernel.event_cookie(cookies[1]));
    let client = shown(std::net::SocketAddr::new(fx.pair.client_ip(false), 41000));
    assert!(evs.iter().all(|e| tuple(e).0 == client), "{evs:?}");
    assert!(u64_of(&evs[2], "syn_at") > u64_of(&evs[0], "established_at"));
    Ok(())
}

/// SYNs answered by a syncookie create no request socket; the child still
/// reaches ESTABLISHED with its own cookie.
#[test]
fn syncookie_handshake_is_established() -> Result<()> {
    let fx = ProbeFixture::start("pr-cookie", "3s", "")?;
    fx.pair
        .server
        .exec(&["sysctl", "-qw", "net.ipv4.tcp_syncookies=2"])?;
    let listener = fx.listen(false, PORT)?;
    let client = fx.connect(false, PORT)?;
    let (accepted, _) = listener.accept()?;
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "established", "{ev}");
    assert_eq!(tuple(ev).0, shown(client.local_addr()?));
    assert_eq!(
        u64_of(ev, "cookie"),
        Kernel::current().event_cookie(cookie(&accepted)?)
    );
    assert!(u64_of(ev, "syn_at") < u64_of(ev, "established_at"));
    Ok(())
}

/// A SYN while the accept queue is full is dropped without an answer
/// (only TC sees it): a timeout with detail `syn-dropped`.
#[test]
fn syn_dropped_by_a_full_accept_queue_times_out() -> Result<()> {
    let fx = ProbeFixture::start("pr-syndrop", "1s", "")?;
    let listener = fx.listen(false, PORT)?;
    // Backlog 0 holds one connection.
    rustix::net::listen(&listener, 0)?;
    let _first = fx.connect(false, PORT)?;
    let evs = fx.exactly(1, WITHIN, Duration::ZERO)?;
    assert_eq!(evs[0]["event"], "established");
    fx.scapy_syn(false, 40999, 7_000_000)?;
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "failed", "{ev}");
    assert_eq!(ev["code"], "TcpTimeout");
    assert_eq!(ev["detail"], "syn-dropped");
    assert_eq!(u64_of(ev, "synack_retransmits"), 0);
    assert_eq!(tuple(ev).0, format!("{}:40999", fx.pair.client_v4));
    Ok(())
}

/// A SYN with another sequence number on the tuple of an open connection
/// (a delayed duplicate, or crafted) is answered with a challenge ACK: it
/// is no attempt, so nothing follows the Established, not even after
/// `syn_timeout`, and the connection still carries data.
fn syn_on_an_open_connection(tag: &str, v6: bool) -> Result<()> {
    use std::io::Read;
    let fx = ProbeFixture::start(tag, "1s", "")?;
    let listener = fx.listen(v6, PORT)?;
    let mut client = fx.connect_from(v6, 41500)?;
    let (mut accepted, _) = listener.accept()?;
    let evs = fx.exactly(1, WITHIN, Duration::ZERO)?;
    assert_eq!(evs[0]["event"], "established", "{}", evs[0]);
    assert_eq!(tuple(&evs[0]).0, shown(client.local_addr()?));
    fx.scapy_syn(v6, 41500, 123_456_789)?;
    // syn_timeout (1 s) plus a sweep period (125 ms) and margin: a false
    // attempt would have been reported as a TcpTimeout by then.
    fx.exactly(0, WITHIN, Duration::from_millis(1600))?;
    client.write_all(b"x")?;
    let mut byte = [0u8; 1];
    accepted.read_exact(&mut byte)?;
    assert_eq!(&byte, b"x");
    Ok(())
}

#[test]
fn syn_on_an_open_connection_is_no_attempt() -> Result<()> {
    syn_on_an_open_connection("pr-dsyn4", false)
}

#[test]
fn syn_on_an_open_connection_v6_is_no_attempt() -> Result<()> {
    syn_on_an_open_connection("pr-dsyn6", true)
}

/// A SYN to a watched port where nothing listens: the kernel refuses it
/// with an RST, reported as the server's reset (with the kernel's reason
/// where it gives one), never as a timeout.
#[test]
fn syn_to_a_port_without_listener_is_server_rst() -> Result<()> {
    let fx = ProbeFixture::start("pr-nolis", "3s", "")?;
    let refused = fx.connect(false, PORT);
    assert!(refused.is_err(), "no listener: refused");
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "failed", "{ev}");
    assert_eq!(ev["code"], "TcpError");
    assert_eq!(ev["detail"], Kernel::current().server_rst("NO_SOCKET"));
    assert_eq!(tuple(ev).1, shown(fx.server_addr(false, PORT)));
    Ok(())
}
