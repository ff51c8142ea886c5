//! `Observe` filters: status, distribution, client address or prefix, time.

use std::net::IpAddr;

use connlog_proto::failure_code_from_name;
use connlog_proto::v1::{ConnectionRecord, FailureCode, ObserveRequest, Status};

#[derive(Debug, Clone, PartialEq)]
enum StatusMatch {
    Success,
    AnyFailure,
    Code(FailureCode),
}

#[derive(Debug, Clone, PartialEq)]
struct Prefix {
    addr: IpAddr,
    len: u8,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Filter {
    statuses: Vec<StatusMatch>,
    distributions: Vec<String>,
    clients: Vec<Prefix>,
    since_ms: Option<u64>,
}

impl Filter {
    pub(crate) fn parse(req: &ObserveRequest) -> Result<Self, String> {
        let statuses = req
            .statuses
            .iter()
            .map(|s| {
                let name = s.strip_prefix("Failed:").unwrap_or(s);
                match name {
                    "Success" => Ok(StatusMatch::Success),
                    "Failed" => Ok(StatusMatch::AnyFailure),
                    code => failure_code_from_name(code)
                        .map(StatusMatch::Code)
                        .ok_or_else(|| format!("unknown status {s:?}")),
                }
            })
            .collect::<Result<_, _>>()?;
        let clients = req
            .client_addresses
            .iter()
            .map(|c| parse_prefix(c).ok_or_else(|| format!("bad client address or prefix {c:?}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            statuses,
            distributions: req.distribution_ids.clone(),
            clients,
            since_ms: req.since_ms,
        })
    }

    pub(crate) fn matches(&self, r: &ConnectionRecord) -> bool {
        let status_ok = self.statuses.is_empty()
            || self.statuses.iter().any(|m| match m {
                StatusMatch::Success => r.status() == Status::Success,
                StatusMatch::AnyFailure => r.status() == Status::Failed,
                StatusMatch::Code(c) => r.status() == Status::Failed && r.failure_code() == *c,
            });
        let dist_ok =
            self.distributions.is_empty() || self.distributions.contains(&r.distribution_id);
        let client_ok = self.clients.is_empty()
            || r.client_ip
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.clients.iter().any(|p| p.contains(ip)));
        let time_ok = self.since_ms.is_none_or(|t| r.event_timestamp_ms >= t);
        status_ok && dist_ok && client_ok && time_ok
    }
}

fn parse_prefix(text: &str) -> Option<Prefix> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = text.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some(Prefix { addr, len })
}

impl Prefix {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        status: Status,
        code: FailureCode,
        ip: &str,
        dist: &str,
        ts: u64,
    ) -> ConnectionRecord {
        let mut r = ConnectionRecord {
            client_ip: ip.into(),
            distribution_id: dist.into(),
            event_timestamp_ms: ts,
            ..Default::default()
        };
        r.set_status(status);
        r.set_failure_code(code);
        r
    }

    #[test]
    fn filters_combine() {
        let f = Filter::parse(&ObserveRequest {
            statuses: vec!["Failed:TcpError".into(), "Success".into()],
            distribution_ids: vec!["D1".into()],
            client_addresses: vec!["198.18.0.0/15".into(), "fd00::/8".into()],
            since_ms: Some(100),
        })
        .unwrap();
        let ok = record(
            Status::Failed,
            FailureCode::TcpError,
            "198.19.1.2",
            "D1",
            100,
        );
        assert!(f.matches(&ok));
        assert!(f.matches(&record(
            Status::Success,
            FailureCode::Unspecified,
            "fd00:1::2",
            "D1",
            200
        )));
        assert!(!f.matches(&record(
            Status::Failed,
            FailureCode::TcpTimeout,
            "198.19.1.2",
            "D1",
            100
        )));
        assert!(!f.matches(&record(
            Status::Failed,
            FailureCode::TcpError,
            "198.20.0.1",
            "D1",
            100
        )));
        assert!(!f.matches(&record(
            Status::Failed,
            FailureCode::TcpError,
            "198.19.1.2",
            "D2",
            100
        )));
        assert!(!f.matches(&record(
            Status::Failed,
            FailureCode::TcpError,
            "198.19.1.2",
            "D1",
            99
        )));
    }

    #[test]
    fn bad_filters_are_named() {
        let err = Filter::parse(&ObserveRequest {
            statuses: vec!["Nope".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err, "unknown status \"Nope\"");
        let err = Filter::parse(&ObserveRequest {
            client_addresses: vec!["198.18.0.0/33".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("198.18.0.0/33"));
        assert!(
            Filter::parse(&ObserveRequest {
                statuses: vec!["Failed".into(), "TcpTimeout".into()],
                ..Default::default()
            })
            .is_ok()
        );
    }
}
