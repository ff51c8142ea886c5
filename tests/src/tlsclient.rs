//! A rustls test client that presents exactly the chain it is given (any
//! key, any certificate: the point is to see how the server judges it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WantsClientCert};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, ConfigBuilder, DigitallySignedStruct, SignatureScheme,
    StreamOwned,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use crate::pki::Leaf;

/// What the client sends.
#[derive(Clone, Default)]
pub struct ClientSpec {
    /// SNI; `None` sends none.
    pub sni: Option<String>,
    /// Certificate chain (leaf first) and the PKCS#8 key to sign with.
    pub cert: Option<(Vec<Vec<u8>>, Vec<u8>)>,
    /// Offer only TLS 1.2.
    pub tls12_only: bool,
}

impl ClientSpec {
    /// SNI `edge.test`, presenting `leaf` with its intermediates.
    pub fn with_leaf(leaf: &Leaf) -> Self {
        let mut chain = vec![leaf.der.clone()];
        chain.extend(leaf.intermediates.iter().cloned());
        Self {
            sni: Some("edge.test".into()),
            cert: Some((chain, leaf.key_pkcs8.clone())),
            tls12_only: false,
        }
    }

    /// SNI `edge.test`, no certificate.
    pub fn anonymous() -> Self {
        Self {
            sni: Some("edge.test".into()),
            cert: None,
            tls12_only: false,
        }
    }
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Runs the handshake over `tcp`. `Ok` means the client finished its side
/// (under TLS 1.3 the server may still reject the certificate afterwards).
pub fn handshake(tcp: TcpStream, spec: &ClientSpec) -> Result<TlsStream> {
    handshake_with(tcp, spec, rustls::crypto::ring::default_provider())
}

/// [`handshake`] with another client crypto provider (its suites and key
/// exchange groups in its order).
pub fn handshake_with(
    tcp: TcpStream,
    spec: &ClientSpec,
    provider: CryptoProvider,
) -> Result<TlsStream> {
    let provider = Arc::new(provider);
    let versions: &[&rustls::SupportedProtocolVersion] = if spec.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        rustls::ALL_VERSIONS
    };
    let builder: ConfigBuilder<ClientConfig, WantsClientCert> =
        ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider.clone())));
    let mut config = match &spec.cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()));
            let signer = provider.key_provider.load_private_key(key)?;
            let chain = chain
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect();
            builder.with_client_cert_resolver(Arc::new(Fixed(Arc::new(CertifiedKey::new(
                chain, signer,
            )))))
        }
    };
    config.resumption = rustls::client::Resumption::disabled();
    let name = match &spec.sni {
        Some(s) => ServerName::try_from(s.clone())?,
        None => {
            config.enable_sni = false;
            ServerName::try_from("edge.test")?
        }
    };
    let conn = ClientConnection::new(Arc::new(config), name)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .context("handshake")?;
    }
    Ok(stream)
}

/// Writes `data` and reads back the same number of bytes (an echo round
/// trip through the proxy).
pub fn echo(stream: &mut TlsStream, data: &[u8]) -> Result<Vec<u8>> {
    stream.write_all(data)?;
    stream.flush()?;
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesClientCert for Fixed {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any server certificate: these tests judge the client's.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The bytes of a real ClientHello (TLS 1.2 + 1.3, SNI `edge.test`), as a
/// rustls client would send them first.
pub fn client_hello_bytes() -> Result<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    let mut conn = ClientConnection::new(Arc::new(config), ServerName::try_from("edge.test")?)?;
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    Ok(out)
}
