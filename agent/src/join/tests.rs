//! The joiner under tokio's paused clock: every combination of halves
//! gives exactly one record.

use std::sync::{Arc, Mutex};

use connlog_proto::v1::{self, ConnectionRecord};
use tokio::time::advance;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::probe::TcpFailureDetail;
use crate::tls::ClientCertInfo;
use crate::{FailureCode, MonoNanos, Status, Tuple};

struct Harness {
    tcp: Option<mpsc::Sender<TcpEvent>>,
    tls: Option<mpsc::Sender<TlsOutcome>>,
    out: Arc<Mutex<Vec<ConnectionRecord>>>,
    stats: Arc<JoinStats>,
    task: tokio::task::JoinHandle<()>,
}

fn tuple(port: u16) -> Tuple {
    Tuple::new(
        format!("198.18.0.2:{port}").parse().unwrap(),
        "198.18.0.1:443".parse().unwrap(),
    )
}

fn start(capacity: usize) -> Harness {
    start_with(capacity, false)
}

fn start_with(capacity: usize, tuple_only: bool) -> Harness {
    let (tcp_tx, tcp_rx) = mpsc::channel(16);
    let (tls_tx, tls_rx) = mpsc::channel(16);
    let out = Arc::new(Mutex::new(Vec::new()));
    let stats = Arc::new(JoinStats::default());
    let mut cfg = JoinConfig::new(
        "edge-1".into(),
        true,
        Distributions::new([(
            "198.18.0.1:443".parse().unwrap(),
            "E2DX1SLDPK0123".to_owned(),
        )]),
    );
    cfg.capacity = capacity;
    cfg.tuple_only = tuple_only;
    let sink = out.clone();
    let task = tokio::spawn(run(
        cfg,
        tcp_rx,
        tls_rx,
        stats.clone(),
        CancellationToken::new(),
        move |r| sink.lock().unwrap().push(r),
    ));
    Harness {
        tcp: Some(tcp_tx),
        tls: Some(tls_tx),
        out,
        stats,
        task,
    }
}

impl Harness {
    async fn tcp(&self, ev: TcpEvent) {
        self.tcp.as_ref().unwrap().send(ev).await.unwrap();
        settle().await;
    }
    async fn tls(&self, o: TlsOutcome) {
        self.tls.as_ref().unwrap().send(o).await.unwrap();
        settle().await;
    }
    fn records(&self) -> Vec<ConnectionRecord> {
        self.out.lock().unwrap().clone()
    }
    async fn close(mut self) -> Vec<ConnectionRecord> {
        self.tcp.take();
        self.tls.take();
        let out = self.out.clone();
        self.task.await.unwrap();
        out.lock().unwrap().clone()
    }
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn outcome(port: u16, cookie: u64, status: Status, detail: Option<&str>) -> TlsOutcome {
    TlsOutcome {
        status,
        detail: detail.map(str::to_owned),
        event_time: 1_731_620_046_814,
        tls_protocol: Some("TLSv1.3".into()),
        tls_cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        handshake_ms: Some(4),
        sni: Some("edge.test".into()),
        cert: Some(ClientCertInfo {
            serial: "01:02".into(),
            subject: "CN=client.test".into(),
            issuer: "CN=ca".into(),
            validity: "NotBefore=2025-06-05T23:28:21Z;NotAfter=2125-05-14T23:33:21Z".into(),
            not_before_s: Some(1_749_166_101),
            not_after_s: Some(4_902_939_201),
            sha256: "ab".into(),
            sans: String::new(),
        }),
        ..TlsOutcome::accepted(
            tuple(port),
            Some(cookie),
            "E2DX1SLDPK0123".into(),
            MonoNanos(1),
        )
    }
}

fn established(port: u16, cookie: u64, us: u64, retrans: u32) -> TcpEvent {
    TcpEvent::Established {
        tuple: tuple(port),
        cookie,
        syn_at: MonoNanos(1_000_000),
        established_at: MonoNanos(1_000_000 + us * 1_000),
        synack_retransmits: retrans,
    }
}

#[tokio::test(start_paused = true)]
async fn tls_then_kernel_joins_into_one_record() {
    let h = start(16);
    let o = outcome(40000, 7, Status::Success, None);
    let id = o.connection_id.to_string();
    h.tls(o).await;
    advance(Duration::from_millis(100)).await;
    assert!(h.records().is_empty(), "waits for the kernel half");
    h.tcp(established(40000, 7, 250, 1)).await;
    advance(Duration::from_secs(5)).await;
    settle().await;
    let recs = h.close().await;
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.connection_id, id);
    assert_eq!(r.status(), v1::Status::Success);
    assert_eq!(r.tcp_handshake_duration_us, Some(250));
    assert_eq!(r.syn_ack_retransmits, Some(1));
    assert_eq!(r.client_leaf_cert_not_before_s, Some(1_749_166_101));
    assert_eq!(r.client_leaf_cert_sans, None);
    assert_eq!(r.tcp_failure_detail, None);
}

#[tokio::test(start_paused = true)]
async fn function_error_reason_is_the_records_detail() {
    let h = start(16);
    let reason = "execution time limit (5 ms) exceeded";
    h.tls(outcome(
        40009,
        11,
        Status::Failed(FailureCode::ConnectionFunctionError),
        Some(reason),
    ))
    .await;
    advance(Duration::from_secs(5)).await;
    settle().await;
    let recs = h.close().await;
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0].failure_code(),
        v1::FailureCode::ConnectionFunctionError
    );
    assert_eq!(recs[0].tcp_failure_detail.as_deref(), Some(reason));
}

#[tokio::test(start_paused = true)]
async fn kernel_then_tls_joins_into_one_record() {
    let h = start(16);
    h.tcp(established(40001, 9, 80, 0)).await;
    advance(Duration::from_secs(3)).await;
    h.tls(outcome(
        40001,
        9,
        Status::Failed(FailureCode::ClientCertExpired),
        Some("expired"),
    ))
    .await;
    let recs = h.close().await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].failure_code(), v1::FailureCode::ClientCertExpired);
    assert_eq!(recs[0].tcp_handshake_duration_us, Some(80));
    assert_eq!(
        recs[0].tcp_failure_detail, None,
        "detail only for TCP codes and function errors"
    );
    assert_eq!(
        recs[0].client_leaf_cert_subject.as_deref(),
        Some(b"CN=client.test".as_slice())
    );
}

#[tokio::test(start_paused = true)]
async fn tls_alone_is_emitted_after_the_grace_with_kernel_fields_empty() {
    let h = start(16);
    h.tls(outcome(40002, 3, Status::Success, None)).await;
    advance(Duration::from_millis(499)).await;
    settle().await;
    assert!(h.records().is_empty());
    advance(Duration::from_millis(2)).await;
    settle().await;
    let recs = h.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].tcp_handshake_duration_us, None);
    assert_eq!(recs[0].syn_ack_retransmits, None);
    assert_eq!(JoinStats::get(&h.stats.tls_only), 1);
    // A kernel half arriving too late does not make a second record.
    h.tcp(established(40002, 3, 10, 0)).await;
    assert_eq!(h.close().await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn kernel_failure_alone_is_a_kernel_only_record() {
    let h = start(16);
    h.tcp(TcpEvent::Failed {
        tuple: tuple(40003),
        code: FailureCode::TcpTimeout,
        detail: TcpFailureDetail::SynAckUnanswered,
        syn_at: Some(MonoNanos(5)),
        failed_at: MonoNanos::now(),
        synack_retransmits: 5,
        cookie: None,
    })
    .await;
    let recs = h.close().await;
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.failure_code(), v1::FailureCode::TcpTimeout);
    assert_eq!(r.tcp_failure_detail.as_deref(), Some("syn-ack-unanswered"));
    assert_eq!(r.syn_ack_retransmits, Some(5));
    assert_eq!(r.distribution_id, "E2DX1SLDPK0123");
    assert_eq!(r.client_port, 40003);
    assert_eq!(r.server_port, 443);
    assert_eq!(r.tls_protocol, None);
    assert_eq!(r.connection_id.len(), 24);
}

#[tokio::test(start_paused = true)]
async fn kernel_rst_and_tls_eof_make_one_tcp_error() {
    for tls_first in [false, true] {
        let h = start(16);
        let eof = outcome(
            40004,
            11,
            Status::Failed(FailureCode::TcpError),
            Some("eof-during-tls"),
        );
        let rst = TcpEvent::Reset {
            tuple: tuple(40004),
            cookie: 11,
            at: MonoNanos(9),
        };
        h.tcp(established(40004, 11, 50, 0)).await;
        if tls_first {
            // The outcome joins with Established at once; the RST comes late.
            h.tls(eof).await;
            h.tcp(rst).await;
        } else {
            h.tcp(rst).await;
            h.tls(eof).await;
        }
        advance(Duration::from_secs(200)).await;
        settle().await;
        let recs = h.close().await;
        assert_eq!(recs.len(), 1, "tls_first={tls_first}");
        assert_eq!(recs[0].failure_code(), v1::FailureCode::TcpError);
        let want = if tls_first {
            "eof-during-tls"
        } else {
            "rst-during-tls"
        };
        assert_eq!(recs[0].tcp_failure_detail.as_deref(), Some(want));
    }
}

/// Clients often close a finished connection with an RST: that reset finds
/// the record already out and must not wait in the table (it used to stay
/// 120 s per connection and fill the table under load).
#[tokio::test(start_paused = true)]
async fn a_reset_after_the_record_keeps_nothing() {
    // A table of one: anything the reset left behind would push the next
    // attempt's Established out as an overflow.
    let h = start(1);
    h.tcp(established(40007, 12, 50, 0)).await;
    h.tls(outcome(40007, 12, Status::Success, None)).await;
    h.tcp(TcpEvent::Reset {
        tuple: tuple(40007),
        cookie: 12,
        at: MonoNanos(9),
    })
    .await;
    h.tcp(established(40008, 13, 60, 0)).await;
    h.tls(outcome(40008, 13, Status::Success, None)).await;
    advance(Duration::from_secs(200)).await;
    settle().await;
    let stats = h.stats.clone();
    let recs = h.close().await;
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.status() == v1::Status::Success));
    assert_eq!(recs[1].tcp_handshake_duration_us, Some(60));
    assert_eq!(JoinStats::get(&stats.joined), 2);
    assert_eq!(JoinStats::get(&stats.overflow_kernel_dropped), 0);
    assert_eq!(JoinStats::get(&stats.kernel_expired), 0);
}

#[tokio::test(start_paused = true)]
async fn reused_client_port_never_merges_attempts() {
    let h = start(16);
    h.tcp(established(40005, 1, 100, 0)).await;
    h.tcp(established(40005, 2, 200, 3)).await;
    let second = outcome(40005, 2, Status::Success, None);
    let first = outcome(
        40005,
        1,
        Status::Failed(FailureCode::ClientCertUntrusted),
        None,
    );
    let (id1, id2) = (
        first.connection_id.to_string(),
        second.connection_id.to_string(),
    );
    h.tls(second).await;
    h.tls(first).await;
    let recs = h.close().await;
    assert_eq!(recs.len(), 2);
    let by_id = |id: &str| recs.iter().find(|r| r.connection_id == id).unwrap().clone();
    assert_eq!(by_id(&id1).tcp_handshake_duration_us, Some(100));
    assert_eq!(
        by_id(&id1).failure_code(),
        v1::FailureCode::ClientCertUntrusted
    );
    assert_eq!(by_id(&id2).tcp_handshake_duration_us, Some(200));
    assert_eq!(by_id(&id2).syn_ack_retransmits, Some(3));
}

#[tokio::test(start_paused = true)]
async fn full_table_emits_the_oldest_early_and_counts_it() {
    let h = start(2);
    for (port, cookie) in [(41000, 1), (41001, 2), (41002, 3)] {
        h.tls(outcome(port, cookie, Status::Success, None)).await;
    }
    let recs = h.records();
    assert_eq!(recs.len(), 1, "the oldest left early");
    assert_eq!(recs[0].client_port, 41000);
    assert_eq!(JoinStats::get(&h.stats.overflow_emitted), 1);
    h.tcp(established(41010, 9, 1, 0)).await;
    assert_eq!(JoinStats::get(&h.stats.overflow_emitted), 2);
    h.tcp(established(41011, 10, 1, 0)).await;
    assert_eq!(JoinStats::get(&h.stats.overflow_emitted), 3);
    h.tcp(established(41012, 11, 1, 0)).await;
    assert_eq!(JoinStats::get(&h.stats.overflow_kernel_dropped), 1);
    assert_eq!(h.close().await.len(), 3, "every TLS outcome once");
}

#[tokio::test(start_paused = true)]
async fn shutdown_emits_waiting_outcomes() {
    let h = start(16);
    h.tls(outcome(40006, 4, Status::Success, None)).await;
    h.tcp(established(40007, 5, 1, 0)).await;
    let recs = h.close().await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].client_port, 40006);
}

#[tokio::test(start_paused = true)]
async fn kernel_only_failures_flow_without_listeners_and_stop_ends_the_joiner() {
    let (tcp_tx, tcp_rx) = mpsc::channel(16);
    let (tls_tx, tls_rx) = mpsc::channel::<TlsOutcome>(16);
    drop(tls_tx);
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let stop = CancellationToken::new();
    let cfg = JoinConfig::new("edge-1".into(), true, Distributions::default());
    let task = tokio::spawn(run(
        cfg,
        tcp_rx,
        tls_rx,
        Arc::new(JoinStats::default()),
        stop.clone(),
        move |r| sink.lock().unwrap().push(r),
    ));
    tcp_tx
        .send(TcpEvent::Failed {
            tuple: tuple(40010),
            code: FailureCode::TcpError,
            detail: TcpFailureDetail::ClientRstInSynRecv,
            syn_at: None,
            failed_at: MonoNanos::now(),
            synack_retransmits: 0,
            cookie: None,
        })
        .await
        .unwrap();
    settle().await;
    assert_eq!(
        out.lock().unwrap().len(),
        1,
        "still running with no TLS side"
    );
    assert!(!task.is_finished());
    // The probe's sender is still alive; stop ends the joiner anyway.
    stop.cancel();
    settle().await;
    assert!(task.is_finished());
    drop(tcp_tx);
}

/// A late ESTABLISHED after the probe reported the attempt's TcpTimeout:
/// the timeout is the one record; the connection's TLS outcome, whichever
/// half comes first, yields none.
#[tokio::test(start_paused = true)]
async fn established_after_a_reported_timeout_adds_no_record() {
    for tls_first in [false, true] {
        let h = start(16);
        h.tcp(TcpEvent::Failed {
            tuple: tuple(40020),
            code: FailureCode::TcpTimeout,
            detail: TcpFailureDetail::SynAckUnanswered,
            syn_at: Some(MonoNanos(5)),
            failed_at: MonoNanos::now(),
            synack_retransmits: 0,
            cookie: None,
        })
        .await;
        let late = TcpEvent::EstablishedAfterTimeout {
            tuple: tuple(40020),
            cookie: 9,
            syn_at: MonoNanos(5),
            established_at: MonoNanos(400_000_005),
        };
        let o = outcome(40020, 9, Status::Success, None);
        if tls_first {
            h.tls(o).await;
            h.tcp(late).await;
        } else {
            h.tcp(late).await;
            h.tls(o).await;
        }
        advance(Duration::from_secs(200)).await;
        settle().await;
        let stats = h.stats.clone();
        let recs = h.close().await;
        assert_eq!(recs.len(), 1, "tls_first={tls_first}: {recs:?}");
        assert_eq!(recs[0].failure_code(), v1::FailureCode::TcpTimeout);
        assert_eq!(JoinStats::get(&stats.after_timeout), 1);
        assert_eq!(JoinStats::get(&stats.tls_only), 0);
        assert_eq!(JoinStats::get(&stats.joined), 0);
    }
}

/// Kernels whose tracing programs cannot read socket cookies report 0: the
/// halves join on the 4-tuple, in either order, and a reused port is a new
/// attempt.
#[tokio::test(start_paused = true)]
async fn without_kernel_cookies_the_tuple_joins() {
    for tls_first in [false, true] {
        let h = start_with(16, true);
        let tls = outcome(40009, 77, Status::Success, None);
        if tls_first {
            h.tls(tls).await;
            h.tcp(established(40009, 0, 50, 1)).await;
        } else {
            h.tcp(established(40009, 0, 50, 1)).await;
            h.tls(tls).await;
        }
        // The port again, later: its own record.
        h.tcp(established(40009, 0, 70, 0)).await;
        h.tls(outcome(40009, 78, Status::Success, None)).await;
        advance(Duration::from_secs(200)).await;
        settle().await;
        let stats = h.stats.clone();
        let recs = h.close().await;
        assert_eq!(recs.len(), 2, "tls_first={tls_first}");
        let retransmits: Vec<_> = recs.iter().map(|r| r.syn_ack_retransmits).collect();
        assert_eq!(retransmits, [Some(1), Some(0)], "tls_first={tls_first}");
        assert_eq!(stats.joined.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
