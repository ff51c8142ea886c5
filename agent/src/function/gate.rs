//! The connection function as the TLS terminator's [`ConnectionGate`]:
//! built per listener from `[listener.connection_function]` at start and
//! on every reload, running on one process-wide [`FunctionPool`].

use std::sync::{Arc, OnceLock};

use crate::ClientCertInfo;
use crate::config::{ConfigError, ListenerConfig};
use crate::tls::{ConnectionGate, GateFuture, GateInput, GateVerdict};

use super::{CertInfo, ConnectionFunction, ConnectionInfo, FunctionPool, FunctionResult, Verdict};

/// Jobs waiting for a worker before connections fail as Internal. Even if
/// every queued function ran into the 5 ms limit, two workers drain a full
/// queue in 320 ms, within the pool's 500 ms reply timeout.
const QUEUE_BOUND: usize = 128;

static POOL: OnceLock<FunctionPool> = OnceLock::new();

/// The process-wide pool, started on first use with one worker per core.
pub fn shared_pool() -> std::io::Result<&'static FunctionPool> {
    if let Some(pool) = POOL.get() {
        return Ok(pool);
    }
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = FunctionPool::start(workers, QUEUE_BOUND)?;
    // A concurrent first call may have won: its pool is used, ours dropped.
    Ok(POOL.get_or_init(|| pool))
}

/// The process-wide pool if something started it (for metrics).
pub fn running_pool() -> Option<&'static FunctionPool> {
    POOL.get()
}

/// The listener's gate, reading the function and KVS files afresh (so a
/// reload picks up edits); `None` without `[listener.connection_function]`.
pub fn for_listener(
    listener: &ListenerConfig,
) -> Result<Option<Arc<dyn ConnectionGate>>, ConfigError> {
    let Some(config) = &listener.connection_function else {
        return Ok(None);
    };
    let key = format!("{}.connection_function", listener.key_prefix);
    let program = config.reload(&key)?;
    let pool = shared_pool().map_err(|e| {
        ConfigError::invalid(key, format!("starting connection function workers: {e}"))
    })?;
    Ok(Some(Arc::new(FunctionGate {
        function: ConnectionFunction::new(pool, program),
    })))
}

#[derive(Debug)]
struct FunctionGate {
    function: ConnectionFunction,
}

impl ConnectionGate for FunctionGate {
    fn decide<'a>(&'a self, input: &'a GateInput<'a>) -> GateFuture<'a> {
        let conn = connection_info(input);
        Box::pin(async move { gate_verdict(self.function.run(conn).await) })
    }
}

fn connection_info(input: &GateInput<'_>) -> ConnectionInfo {
    ConnectionInfo {
        connection_id: input.connection_id.to_string(),
        distribution_id: input.distribution_id.to_owned(),
        client_ip: input.client.ip(),
        endpoint: input.sni.map(str::to_owned),
        leaf: input.leaf.map(cert_info),
        intermediates: input
            .chain
            .iter()
            .skip(1)
            .filter_map(|der| crate::certinfo::from_der(der))
            .map(|c| cert_info(&c))
            .collect(),
    }
}

/// Splits `NotBefore=…;NotAfter=…` back into its two times.
fn cert_info(cert: &ClientCertInfo) -> CertInfo {
    let (not_before, not_after) = cert
        .validity
        .split_once(';')
        .map(|(b, a)| {
            (
                b.trim_start_matches("NotBefore=").to_owned(),
                a.trim_start_matches("NotAfter=").to_owned(),
            )
        })
        .unwrap_or_default();
    CertInfo {
        serial_number: cert.serial.clone(),
        subject: cert.subject.clone(),
        issuer: cert.issuer.clone(),
        not_before,
        not_after,
        sha256_fingerprint: cert.sha256.clone(),
    }
}

fn gate_verdict(result: FunctionResult) -> GateVerdict {
    let custom_data = result.custom_data;
    match result.verdict {
        Verdict::Allow => GateVerdict::Allow { custom_data },
        Verdict::Deny => GateVerdict::Deny { custom_data },
        Verdict::Error(reason) => GateVerdict::Error {
            reason,
            custom_data,
        },
        Verdict::Internal(reason) => GateVerdict::Internal {
            reason,
            custom_data,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_maps_onto_its_gate_verdict() {
        let result = |verdict| FunctionResult {
            verdict,
            custom_data: Some("c".into()),
            exec_time: std::time::Duration::ZERO,
        };
        let custom_data = Some("c".to_string());
        assert_eq!(
            gate_verdict(result(Verdict::Allow)),
            GateVerdict::Allow {
                custom_data: custom_data.clone()
            }
        );
        assert_eq!(
            gate_verdict(result(Verdict::Deny)),
            GateVerdict::Deny {
                custom_data: custom_data.clone()
            }
        );
        assert_eq!(
            gate_verdict(result(Verdict::Error("boom".into()))),
            GateVerdict::Error {
                reason: "boom".into(),
                custom_data: custom_data.clone()
            }
        );
        assert_eq!(
            gate_verdict(result(Verdict::Internal(
                "connection function queue full".into()
            ))),
            GateVerdict::Internal {
                reason: "connection function queue full".into(),
                custom_data
            }
        );
    }

    #[test]
    fn validity_is_split_into_its_times() {
        let cert = ClientCertInfo {
            serial: "01".into(),
            subject: "CN=c".into(),
            issuer: "CN=ca".into(),
            validity: "NotBefore=2025-06-05T23:28:21Z;NotAfter=2125-05-12T23:28:21Z".into(),
            not_before_s: Some(1_749_166_101),
            not_after_s: Some(4_902_766_101),
            sha256: "ab".into(),
            sans: String::new(),
        };
        let info = cert_info(&cert);
        assert_eq!(info.not_before, "2025-06-05T23:28:21Z");
        assert_eq!(info.not_after, "2125-05-12T23:28:21Z");
        assert_eq!(info.serial_number, "01");
        assert_eq!(info.sha256_fingerprint, "ab");
    }
}
