//! Client-certificate policy (SPEC.md section 3): a rustls
//! `ClientCertVerifier` that wraps webpki's path building with the checks
//! webpki cannot tell apart, picks the one SPEC.md code by precedence, and
//! captures the presented chain so failure records carry the certificate.

mod access;
mod cache;
mod checks;

use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::*;

use crate::config::{MtlsConfig, MtlsMode};
use crate::{ClientCertInfo, FailureCode};

use cache::{Judgement, JudgementCache};

/// The policy of one listener, shared by its connections. Built at start
/// and on every reload.
#[derive(Debug)]
pub(crate) struct Policy {
    mtls: MtlsConfig,
    /// webpki path building and CRLs; `None` in passthrough mode.
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    /// Raw DER subjects of the trust anchors, for the depth check.
    anchor_subjects: Vec<Vec<u8>>,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
    /// Judgements of chains seen before.
    judgements: JudgementCache,
}

/// What the verifier saw on one connection.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    /// The presented chain, leaf first, as DER.
    pub(crate) chain: Vec<Vec<u8>>,
    /// The policy's verdict, when it refused the chain.
    pub(crate) code: Option<FailureCode>,
    /// The leaf's record fields, when it parsed (from the policy's own
    /// parse, so the terminator need not parse it again).
    pub(crate) cert: Option<ClientCertInfo>,
}

/// The error carried inside `CertificateError::Other` for codes rustls has
/// no variant for.
#[derive(Debug, thiserror::Error)]
#[error("client certificate refused: {0}")]
pub(crate) struct PolicyRefusal(pub(crate) FailureCode);

impl Policy {
    /// `roots` is the parsed trust store (empty in passthrough), `crls` the
    /// parsed CRLs.
    pub(crate) fn new(
        mtls: MtlsConfig,
        roots: RootCertStore,
        crls: Vec<rustls_pki_types::CertificateRevocationListDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, rustls::server::VerifierBuilderError> {
        let anchor_subjects = roots
            .roots
            .iter()
            .map(|ta| der_name(ta.subject.as_ref()))
            .collect();
        let hints = if mtls.advertise_ca_names {
            roots.subjects()
        } else {
            Vec::new()
        };
        let webpki = if mtls.mode == MtlsMode::Passthrough {
            None
        } else {
            let mut builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .clear_root_hint_subjects();
            if !crls.is_empty() {
                builder = builder.with_crls(crls).allow_unknown_revocation_status();
            }
            Some(builder.build()?)
        };
        Ok(Self {
            mtls,
            webpki,
            anchor_subjects,
            hints,
            provider,
            judgements: JudgementCache::default(),
        })
    }

    /// Every check in SPEC.md's precedence at `now`: the first code that
    /// applies, and the leaf's fields when it parses. A chain seen before
    /// is judged from the cache, with only the clock read again.
    fn judge(
        &self,
        chain: &[&[u8]],
        now: UnixTime,
    ) -> (Option<FailureCode>, Option<ClientCertInfo>) {
        if chain.len() > self.mtls.max_chain_depth {
            let leaf = crate::certinfo::from_der(chain[0]);
            return (Some(FailureCode::ClientCertMaxChainDepthExceeded), leaf);
        }
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let key = JudgementCache::key(chain);
        if let Some(judged) = self.judgements.get(&key) {
            return (judged.at(now_secs), judged.leaf.clone());
        }
        let (judged, cacheable) = self.judge_fresh(chain, now);
        let code = judged.at(now_secs);
        if cacheable {
            let leaf = judged.leaf.clone();
            self.judgements.put(key, Arc::new(judged));
            (code, leaf)
        } else {
            (code, judged.leaf)
        }
    }

    /// Parses and checks `chain`; `true` with it when the judgement is the
    /// chain's alone (everything but webpki reads the chain only, and
    /// webpki is asked at a time inside the path's validity when there is
    /// one).
    fn judge_fresh(&self, chain: &[&[u8]], now: UnixTime) -> (Judgement, bool) {
        let mut codes: Vec<FailureCode> = Vec::new();
        codes.extend(checks::size(chain, self.mtls.max_cert_size));
        let mut parsed = Vec::with_capacity(chain.len());
        let mut leaf = None;
        for (i, der) in chain.iter().enumerate() {
            match X509Certificate::from_der(der) {
                Ok((_, cert)) => {
                    if i == 0 {
                        leaf = Some(crate::certinfo::from_parsed(&cert, der));
                    }
                    parsed.push(cert);
                }
                Err(_) => codes.push(FailureCode::ClientCertInvalid),
            }
        }
        if parsed.len() != chain.len() {
            let judged = Judgement {
                code: codes.into_iter().min(),
                window: None,
                leaf,
            };
            return (judged, true);
        }
        let (judged, cacheable) = self.judge_parsed(chain, &parsed, codes, now);
        (Judgement { leaf, ..judged }, cacheable)
    }

    /// The checks that need every certificate parsed; `codes` holds what
    /// was found so far. The leaf's fields are left to the caller.
    fn judge_parsed(
        &self,
        chain: &[&[u8]],
        parsed: &[X509Certificate<'_>],
        mut codes: Vec<FailureCode>,
        now: UnixTime,
    ) -> (Judgement, bool) {
        let mtls = &self.mtls;
        let judged = |code, window| Judgement {
            code,
            window,
            leaf: None,
        };
        let anchors: Vec<&[u8]> = self.anchor_subjects.iter().map(Vec::as_slice).collect();
        if checks::path_len(parsed, &anchors).is_some_and(|len| len > mtls.max_chain_depth) {
            let code = Some(FailureCode::ClientCertMaxChainDepthExceeded);
            return (judged(code, None), true);
        }
        codes.extend(checks::critical_extensions(parsed));
        codes.extend(checks::key_type(parsed, &mtls.key_types));
        let window = checks::Window::of(&checks::path(parsed));
        let mut cacheable = true;
        let mut expiry = None;
        if let Some(webpki) = &self.webpki {
            // Judge the path at a time when it is valid, so a chain that is
            // both expired and untrusted reports Untrusted (SPEC.md order).
            // Without such a time webpki is asked at `now`, and its verdict
            // is not the chain's alone.
            let inside = window.inside().and_then(|t| u64::try_from(t).ok());
            cacheable = inside.is_some();
            let at = inside.map_or(now, |t| {
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(t))
            });
            let (ee, rest) = (CertificateDer::from(chain[0]), &chain[1..]);
            let ints: Vec<CertificateDer<'_>> =
                rest.iter().map(|d| CertificateDer::from(*d)).collect();
            codes.extend(
                webpki
                    .verify_client_cert(&ee, &ints, at)
                    .err()
                    .map(|err| crate::tls::classify::rustls_code(&err)),
            );
            if !mtls.ignore_certificate_expiry {
                expiry = Some(window);
            }
        }
        codes.extend(checks::intent(&parsed[0]));
        if let Some(rules) = &mtls.access {
            let cns = crate::certinfo::common_names(parsed[0].subject());
            let (dns, uris) = crate::certinfo::san_names(&parsed[0]);
            if !access::allows(rules, &cns, &dns, &uris) {
                codes.push(FailureCode::ClientCertRejected);
            }
        }
        (judged(codes.into_iter().min(), expiry), cacheable)
    }
}

/// Raw DER of a Name from its content bytes (trust anchors keep the
/// SEQUENCE contents only).
fn der_name(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x30];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The rustls error that carries `code` (and picks the alert the client sees).
fn refusal(code: FailureCode) -> Error {
    let cert_error = match code {
        FailureCode::ClientCertUntrusted => CertificateError::UnknownIssuer,
        FailureCode::ClientCertExpired => CertificateError::Expired,
        FailureCode::ClientCertNotYetValid => CertificateError::NotValidYet,
        FailureCode::ClientCertIntentInvalid => CertificateError::InvalidPurpose,
        _ => CertificateError::Other(OtherError(Arc::new(PolicyRefusal(code)))),
    };
    Error::InvalidCertificate(cert_error)
}

tokio::task_local! {
    /// The capture of the connection whose handshake is being polled.
    /// rustls calls the verifier synchronously inside that poll, so the
    /// one shared verifier can record per connection without a
    /// per-connection `ServerConfig`.
    static CAPTURE: Arc<Mutex<Capture>>;
}

/// Runs `handshake` with a fresh capture and returns both.
pub(crate) async fn capturing<F: std::future::Future>(handshake: F) -> (F::Output, Capture) {
    let capture = Arc::new(Mutex::new(Capture::default()));
    let output = CAPTURE.scope(capture.clone(), handshake).await;
    let captured = match capture.lock() {
        Ok(mut guard) => std::mem::take(&mut *guard),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    (output, captured)
}

impl ClientCertVerifier for Policy {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mtls.mode == MtlsMode::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let chain: Vec<&[u8]> = std::iter::once(end_entity.as_ref())
            .chain(intermediates.iter().map(|c| c.as_ref()))
            .collect();
        let (code, cert) = self.judge(&chain, now);
        // Outside a capturing scope (never in the terminator) nothing is
        // recorded; the verdict is the same.
        let _ = CAPTURE.try_with(|capture| {
            if let Ok(mut capture) = capture.lock() {
                capture.chain = chain.iter().map(|d| d.to_vec()).collect();
                capture.code = code;
                capture.cert = cert;
            }
        });
        match code {
            None => Ok(ClientCertVerified::assertion()),
            Some(code) => Err(refusal(code)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests;
