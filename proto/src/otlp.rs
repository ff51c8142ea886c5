//! SPEC.md section 6: a record as an OpenTelemetry log record. Standard
//! attribute names where they exist, `connlog.` for the rest;
//! `time_unix_nano` = eventTimestamp.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::fields::{Field, FieldValue};
use crate::status::{failure_code_name, status_text};
use crate::time::format_rfc3339_s;
use crate::v1::{ConnectionRecord, Status};

/// OpenTelemetry severity numbers: INFO for Success, WARN for failures.
const SEVERITY_INFO: i32 = 9;
const SEVERITY_WARN: i32 = 13;

/// The attribute name each field is exported under.
pub fn attribute_name(field: Field) -> &'static str {
    match field {
        Field::EventTimestamp => "connlog.event_timestamp",
        Field::ConnectionId => "connlog.connection_id",
        Field::ConnectionStatus => "connlog.connection_status",
        Field::ClientIp => "client.address",
        Field::ClientPort => "client.port",
        Field::ServerIp => "network.local.address",
        Field::DistributionId => "connlog.distribution_id",
        Field::DistributionTenantId => "connlog.distribution_tenant_id",
        Field::TlsProtocol => "tls.protocol.version",
        Field::TlsCipher => "tls.cipher",
        Field::TlsHandshakeDuration => "connlog.tls_handshake_duration_ms",
        Field::TlsSni => "server.address",
        Field::ClientLeafCertSerialNumber => "connlog.client_leaf_cert_serial_number",
        Field::ClientLeafCertSubject => "tls.client.subject",
        Field::ClientLeafCertIssuer => "tls.client.issuer",
        Field::ClientLeafCertValidity => "connlog.client_leaf_cert_validity",
        Field::ConnectionLogCustomData => "connlog.connection_log_custom_data",
        Field::ServerPort => "network.local.port",
        Field::TcpHandshakeDuration => "connlog.tcp_handshake_duration_us",
        Field::SynAckRetransmits => "connlog.syn_ack_retransmits",
        Field::TcpFailureDetail => "connlog.tcp_failure_detail",
        Field::ClientLeafCertSha256 => "tls.client.hash.sha256",
        Field::ClientLeafCertSans => "connlog.client_leaf_cert_sans",
        Field::AgentId => "connlog.agent_id",
    }
}

/// One record as an OpenTelemetry log record.
pub fn to_log_record(r: &ConnectionRecord) -> LogRecord {
    let mut attributes = Vec::with_capacity(Field::ALL.len() + 4);
    for field in Field::ALL {
        // The timestamp is the record's time; validity is split below.
        if matches!(field, Field::EventTimestamp | Field::ClientLeafCertValidity) {
            continue;
        }
        let value = match field.value(r) {
            FieldValue::Absent => continue,
            FieldValue::UInt(n) => Value::IntValue(i64::try_from(n).unwrap_or(i64::MAX)),
            FieldValue::Text(bytes) => match String::from_utf8(bytes.into_owned()) {
                Ok(s) => Value::StringValue(s),
                Err(err) => Value::BytesValue(err.into_bytes()),
            },
        };
        attributes.push(kv(attribute_name(field), value));
    }
    if let Some(nb) = r.client_leaf_cert_not_before_s {
        attributes.push(kv(
            "tls.client.not_before",
            Value::StringValue(format_rfc3339_s(nb)),
        ));
    }
    if let Some(na) = r.client_leaf_cert_not_after_s {
        attributes.push(kv(
            "tls.client.not_after",
            Value::StringValue(format_rfc3339_s(na)),
        ));
    }
    let success = r.status() == Status::Success;
    attributes.push(kv("tls.established", Value::BoolValue(success)));
    if let (false, Some(code)) = (success, failure_code_name(r.failure_code())) {
        attributes.push(kv("error.type", Value::StringValue(code.to_owned())));
    }
    LogRecord {
        time_unix_nano: r.event_timestamp_ms.saturating_mul(1_000_000),
        observed_time_unix_nano: now_unix_nanos(),
        severity_number: if success {
            SEVERITY_INFO
        } else {
            SEVERITY_WARN
        },
        severity_text: if success { "INFO" } else { "WARN" }.to_owned(),
        body: status_text(r).map(|s| AnyValue {
            value: Some(Value::StringValue(s)),
        }),
        attributes,
        ..Default::default()
    }
}

/// An `Export` request carrying `records`, with the agent as the resource.
pub fn export_request(agent_id: &str, records: &[ConnectionRecord]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("connlog".to_owned())),
                    kv("host.name", Value::StringValue(agent_id.to_owned())),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "connlog".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                log_records: records.iter().map(to_log_record).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::FailureCode;

    fn attr<'a>(log: &'a LogRecord, key: &str) -> Option<&'a Value> {
        log.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn failure_maps_to_spec_attributes() {
        let mut r = ConnectionRecord {
            event_timestamp_ms: 1_731_620_046_814,
            connection_id: "abc".into(),
            client_ip: "198.18.0.2".into(),
            client_port: 12137,
            server_ip: "198.18.0.1".into(),
            server_port: 443,
            tls_sni: Some("edge.test".into()),
            client_leaf_cert_subject: Some(b"CN=client.test".to_vec()),
            client_leaf_cert_not_before_s: Some(1_749_166_101),
            ..Default::default()
        };
        r.set_status(Status::Failed);
        r.set_failure_code(FailureCode::ClientCertExpired);
        let log = to_log_record(&r);
        assert_eq!(log.time_unix_nano, 1_731_620_046_814_000_000);
        let s = |v: &str| Some(Value::StringValue(v.to_owned()));
        assert_eq!(attr(&log, "client.address").cloned(), s("198.18.0.2"));
        assert_eq!(
            attr(&log, "client.port").cloned(),
            Some(Value::IntValue(12137))
        );
        assert_eq!(
            attr(&log, "network.local.address").cloned(),
            s("198.18.0.1")
        );
        assert_eq!(attr(&log, "server.address").cloned(), s("edge.test"));
        assert_eq!(
            attr(&log, "tls.client.subject").cloned(),
            s("CN=client.test")
        );
        assert_eq!(
            attr(&log, "tls.client.not_before").cloned(),
            s("2025-06-05T23:28:21Z")
        );
        assert_eq!(
            attr(&log, "tls.established").cloned(),
            Some(Value::BoolValue(false))
        );
        assert_eq!(attr(&log, "error.type").cloned(), s("ClientCertExpired"));
        assert_eq!(attr(&log, "connlog.connection_id").cloned(), s("abc"));
        assert_eq!(attr(&log, "tls.cipher"), None);
        assert_eq!(log.severity_number, SEVERITY_WARN);
    }
}
