//! `connectionStatus`: `Success` or `Failed:<Code>` (SPEC.md section 2).

use std::fmt;

/// The outcome of one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Success,
    Failed(FailureCode),
}

/// Why an attempt failed. Declared in SPEC.md's precedence order for the
/// certificate codes, so `min()` over several applicable codes picks the one
/// the record must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureCode {
    ClientCertMaxChainDepthExceeded,
    ClientCertMaxSizeExceeded,
    ClientCertInvalid,
    ClientCertTypeUnsupported,
    ClientCertUntrusted,
    ClientCertExpired,
    ClientCertNotYetValid,
    ClientCertIntentInvalid,
    ClientCertRejected,
    ConnectionFunctionError,
    ConnectionFunctionDenied,
    ClientCertMissing,
    TcpError,
    TcpTimeout,
    Internal,
    UnmappedConnectionError,
}

impl FailureCode {
    /// Every code, in precedence order.
    pub const ALL: [FailureCode; 16] = [
        Self::ClientCertMaxChainDepthExceeded,
        Self::ClientCertMaxSizeExceeded,
        Self::ClientCertInvalid,
        Self::ClientCertTypeUnsupported,
        Self::ClientCertUntrusted,
        Self::ClientCertExpired,
        Self::ClientCertNotYetValid,
        Self::ClientCertIntentInvalid,
        Self::ClientCertRejected,
        Self::ConnectionFunctionError,
        Self::ConnectionFunctionDenied,
        Self::ClientCertMissing,
        Self::TcpError,
        Self::TcpTimeout,
        Self::Internal,
        Self::UnmappedConnectionError,
    ];

    /// The code as SPEC.md spells it, without the `Failed:` prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCertMaxChainDepthExceeded => "ClientCertMaxChainDepthExceeded",
            Self::ClientCertMaxSizeExceeded => "ClientCertMaxSizeExceeded",
            Self::ClientCertInvalid => "ClientCertInvalid",
            Self::ClientCertTypeUnsupported => "ClientCertTypeUnsupported",
            Self::ClientCertUntrusted => "ClientCertUntrusted",
            Self::ClientCertExpired => "ClientCertExpired",
            Self::ClientCertNotYetValid => "ClientCertNotYetValid",
            Self::ClientCertIntentInvalid => "ClientCertIntentInvalid",
            Self::ClientCertRejected => "ClientCertRejected",
            Self::ConnectionFunctionError => "ConnectionFunctionError",
            Self::ConnectionFunctionDenied => "ConnectionFunctionDenied",
            Self::ClientCertMissing => "ClientCertMissing",
            Self::TcpError => "TcpError",
            Self::TcpTimeout => "TcpTimeout",
            Self::Internal => "Internal",
            Self::UnmappedConnectionError => "UnmappedConnectionError",
        }
    }

    /// Parses a code as SPEC.md spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Success => f.write_str("Success"),
            Status::Failed(code) => write!(f, "Failed:{code}"),
        }
    }
}

impl Status {
    /// Parses `Success` or `Failed:<Code>`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Success" => Some(Status::Success),
            _ => FailureCode::from_name(s.strip_prefix("Failed:")?).map(Status::Failed),
        }
    }
}

impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_spec() {
        assert_eq!(Status::Success.to_string(), "Success");
        assert_eq!(
            Status::Failed(FailureCode::ClientCertExpired).to_string(),
            "Failed:ClientCertExpired"
        );
    }

    #[test]
    fn every_code_round_trips() {
        for code in FailureCode::ALL {
            assert_eq!(
                Status::parse(&Status::Failed(code).to_string()),
                Some(Status::Failed(code))
            );
        }
        assert_eq!(Status::parse("Failed:Nope"), None);
        assert_eq!(Status::parse("Success"), Some(Status::Success));
    }

    #[test]
    fn certificate_precedence_follows_spec() {
        use FailureCode::*;
        let order = [
            ClientCertMaxChainDepthExceeded,
            ClientCertMaxSizeExceeded,
            ClientCertInvalid,
            ClientCertTypeUnsupported,
            ClientCertUntrusted,
            ClientCertExpired,
            ClientCertIntentInvalid,
            ClientCertRejected,
            ConnectionFunctionError,
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            [ClientCertExpired, ClientCertUntrusted].into_iter().min(),
            Some(ClientCertUntrusted)
        );
    }
}
