//! The one place where a failed handshake becomes a SPEC.md code:
//! `io::Error` → `rustls::Error` → [`FailureCode`], plus a `detail` for
//! the TCP-level cases.

use std::io;

use rustls::{CertificateError, Error};

use crate::FailureCode;
use crate::policy::PolicyRefusal;

/// A failure's code and its `tcpFailureDetail` (or a short reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: FailureCode,
    pub(crate) detail: Option<String>,
}

impl Failure {
    pub(crate) fn new(code: FailureCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: Some(detail.into()),
        }
    }
}

/// Classifies an error from reading the ClientHello or driving the
/// handshake. tokio-rustls wraps `rustls::Error` in an `io::Error` of kind
/// `InvalidData`.
pub(crate) fn io_failure(err: &io::Error) -> Failure {
    if let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        return Failure::new(rustls_code(tls), tls.to_string());
    }
    match err.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Failure::new(FailureCode::TcpError, "rst-during-tls"),
        io::ErrorKind::UnexpectedEof => Failure::new(FailureCode::TcpError, "eof-during-tls"),
        io::ErrorKind::TimedOut => Failure::new(FailureCode::TcpTimeout, "handshake-timeout"),
        io::ErrorKind::InvalidData => {
            Failure::new(FailureCode::UnmappedConnectionError, err.to_string())
        }
        _ => Failure::new(FailureCode::Internal, err.to_string()),
    }
}

/// Maps a rustls error (from the handshake, or from webpki inside the
/// policy) onto SPEC.md's codes.
pub(crate) fn rustls_code(err: &Error) -> FailureCode {
    match err {
        Error::InvalidCertificate(cert) => certificate_code(cert),
        Error::NoCertificatesPresented => FailureCode::ClientCertMissing,
        Error::InvalidCertRevocationList(_)
        | Error::General(_)
        | Error::FailedToGetCurrentTime
        | Error::FailedToGetRandomBytes => FailureCode::Internal,
        // Not TLS, no common version or suite, malformed messages, alerts
        // from the client, misbehaving peers.
        _ => FailureCode::UnmappedConnectionError,
    }
}

#[expect(
    deprecated,
    reason = "older webpki versions still produce the context-free variants"
)]
fn certificate_code(err: &CertificateError) -> FailureCode {
    match err {
        CertificateError::Other(other) => other
            .0
            .downcast_ref::<PolicyRefusal>()
            .map_or(FailureCode::ClientCertInvalid, |r| r.0),
        CertificateError::BadEncoding
        | CertificateError::BadSignature
        | CertificateError::UnhandledCriticalExtension => FailureCode::ClientCertInvalid,
        CertificateError::UnsupportedSignatureAlgorithm
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            FailureCode::ClientCertTypeUnsupported
        }
        CertificateError::UnknownIssuer => FailureCode::ClientCertUntrusted,
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            FailureCode::ClientCertExpired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            FailureCode::ClientCertNotYetValid
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            FailureCode::ClientCertIntentInvalid
        }
        CertificateError::Revoked
        | CertificateError::UnknownRevocationStatus
        | CertificateError::ApplicationVerificationFailure => FailureCode::ClientCertRejected,
        // An expired CRL is our configuration's problem, not the client's.
        CertificateError::ExpiredRevocationList
        | CertificateError::ExpiredRevocationListContext { .. } => FailureCode::Internal,
        _ => FailureCode::ClientCertInvalid,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::{AlertDescription, OtherError, PeerIncompatible};

    use super::*;

    fn wrapped(err: Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    fn code_of(cert: CertificateError) -> FailureCode {
        io_failure(&wrapped(Error::InvalidCertificate(cert))).code
    }

    #[test]
    fn policy_refusal_carries_its_code() {
        for code in [
            FailureCode::ClientCertMaxChainDepthExceeded,
            FailureCode::ClientCertMaxSizeExceeded,
            FailureCode::ClientCertTypeUnsupported,
            FailureCode::ClientCertRejected,
        ] {
            let err = CertificateError::Other(OtherError(Arc::new(PolicyRefusal(code))));
            assert_eq!(code_of(err), code);
        }
    }

    #[test]
    fn foreign_other_error_is_invalid() {
        let err = CertificateError::Other(OtherError(Arc::new(io::Error::other("x"))));
        assert_eq!(code_of(err), FailureCode::ClientCertInvalid);
    }

    #[test]
    #[expect(deprecated, reason = "the context-free variant is still mapped")]
    fn certificate_errors() {
        use FailureCode::*;
        for (err, code) in [
            (CertificateError::BadEncoding, ClientCertInvalid),
            (CertificateError::BadSignature, ClientCertInvalid),
            (
                CertificateError::UnhandledCriticalExtension,
                ClientCertInvalid,
            ),
            (
                CertificateError::UnsupportedSignatureAlgorithm,
                ClientCertTypeUnsupported,
            ),
            (CertificateError::UnknownIssuer, ClientCertUntrusted),
            (CertificateError::Expired, ClientCertExpired),
            (CertificateError::NotValidYet, ClientCertNotYetValid),
            (CertificateError::InvalidPurpose, ClientCertIntentInvalid),
            (CertificateError::Revoked, ClientCertRejected),
            (
                CertificateError::UnknownRevocationStatus,
                ClientCertRejected,
            ),
            (
                CertificateError::ApplicationVerificationFailure,
                ClientCertRejected,
            ),
            (CertificateError::ExpiredRevocationList, Internal),
            (CertificateError::NotValidForName, ClientCertInvalid),
        ] {
            assert_eq!(code_of(err.clone()), code, "{err:?}");
        }
    }

    #[test]
    fn handshake_errors() {
        use FailureCode::*;
        for (err, code) in [
            (Error::NoCertificatesPresented, ClientCertMissing),
            (
                Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered),
                UnmappedConnectionError,
            ),
            (
                Error::AlertReceived(AlertDescription::BadCertificate),
                UnmappedConnectionError,
            ),
            (
                Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                UnmappedConnectionError,
            ),
            (Error::General("x".into()), Internal),
        ] {
            assert_eq!(io_failure(&wrapped(err.clone())).code, code, "{err:?}");
        }
    }

    #[test]
    fn transport_errors() {
        let reset = io_failure(&io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(reset, Failure::new(FailureCode::TcpError, "rst-during-tls"));
        let eof = io_failure(&io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(eof, Failure::new(FailureCode::TcpError, "eof-during-tls"));
        let timeout = io_failure(&io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(timeout.code, FailureCode::TcpTimeout);
        let emfile = io_failure(&io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(emfile.code, FailureCode::Internal);
        let garbage = io_failure(&io::Error::new(io::ErrorKind::InvalidData, "not tls"));
        assert_eq!(garbage.code, FailureCode::UnmappedConnectionError);
    }
}
