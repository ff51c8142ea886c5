//! `connectionStatus` text (SPEC.md section 2) for the wire enums.

use crate::v1::{ConnectionRecord, FailureCode, Status};

/// The code as SPEC.md spells it, `None` for `Unspecified`.
pub fn failure_code_name(code: FailureCode) -> Option<&'static str> {
    use FailureCode as F;
    Some(match code {
        F::Unspecified => return None,
        F::ClientCertMaxChainDepthExceeded => "ClientCertMaxChainDepthExceeded",
        F::ClientCertMaxSizeExceeded => "ClientCertMaxSizeExceeded",
        F::ClientCertInvalid => "ClientCertInvalid",
        F::ClientCertTypeUnsupported => "ClientCertTypeUnsupported",
        F::ClientCertUntrusted => "ClientCertUntrusted",
        F::ClientCertExpired => "ClientCertExpired",
        F::ClientCertNotYetValid => "ClientCertNotYetValid",
        F::ClientCertIntentInvalid => "ClientCertIntentInvalid",
        F::ClientCertRejected => "ClientCertRejected",
        F::ConnectionFunctionError => "ConnectionFunctionError",
        F::ConnectionFunctionDenied => "ConnectionFunctionDenied",
        F::ClientCertMissing => "ClientCertMissing",
        F::TcpError => "TcpError",
        F::TcpTimeout => "TcpTimeout",
        F::Internal => "Internal",
        F::UnmappedConnectionError => "UnmappedConnectionError",
    })
}

/// Parses a code as SPEC.md spells it.
pub fn failure_code_from_name(name: &str) -> Option<FailureCode> {
    (1..=16)
        .filter_map(|n| FailureCode::try_from(n).ok())
        .find(|c| failure_code_name(*c) == Some(name))
}

/// `Success` or `Failed:<Code>`; `None` when the record's status is
/// unspecified or a failure carries no code (a malformed record).
pub fn status_text(record: &ConnectionRecord) -> Option<String> {
    match record.status() {
        Status::Success => Some("Success".to_owned()),
        Status::Failed => failure_code_name(record.failure_code()).map(|c| format!("Failed:{c}")),
        Status::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_name_that_parses_back() {
        for n in 1..=16 {
            let code = FailureCode::try_from(n).unwrap();
            let name = failure_code_name(code).unwrap();
            assert_eq!(failure_code_from_name(name), Some(code));
        }
        assert_eq!(failure_code_name(FailureCode::Unspecified), None);
    }

    #[test]
    fn status_text_matches_spec() {
        let mut r = ConnectionRecord::default();
        assert_eq!(status_text(&r), None);
        r.set_status(Status::Success);
        assert_eq!(status_text(&r).as_deref(), Some("Success"));
        r.set_status(Status::Failed);
        assert_eq!(status_text(&r), None);
        r.set_failure_code(FailureCode::TcpTimeout);
        assert_eq!(status_text(&r).as_deref(), Some("Failed:TcpTimeout"));
    }
}
