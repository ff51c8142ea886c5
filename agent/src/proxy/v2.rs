//! The PROXY protocol v2 header sent to the upstream before any data:
//! addresses, the connectionId, and the TLS details.
//!
//! TLVs written:
//! - `PP2_TYPE_AUTHORITY` (0x02): the SNI, when sent.
//! - `PP2_TYPE_UNIQUE_ID` (0x05): the connectionId (ASCII, 24 bytes).
//! - `PP2_TYPE_SSL` (0x20): `client` = `PP2_CLIENT_SSL`, plus
//!   `PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS` when a certificate was
//!   presented; `verify` = 0 only when a presented certificate was verified
//!   against the trust store (1 otherwise, e.g. passthrough or none); sub-TLVs
//!   `PP2_SUBTYPE_SSL_VERSION` (0x21, `TLSv1.3`), `PP2_SUBTYPE_SSL_CN` (0x22,
//!   the leaf's first subject CN), `PP2_SUBTYPE_SSL_CIPHER` (0x23, IANA name).
//! - 0xE0 (first custom type): the client leaf certificate, DER.
//! - 0xE1: the distributionTenantId, when resolved.

use std::net::SocketAddr;

const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
pub(crate) const PP2_TYPE_AUTHORITY: u8 = 0x02;
pub(crate) const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
pub(crate) const PP2_TYPE_SSL: u8 = 0x20;
pub(crate) const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
pub(crate) const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
pub(crate) const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
pub(crate) const PP2_TYPE_CONNLOG_LEAF: u8 = 0xE0;
pub(crate) const PP2_TYPE_CONNLOG_TENANT: u8 = 0xE1;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// What the header says about one connection.
#[derive(Debug)]
pub(crate) struct ProxyInfo<'a> {
    pub(crate) client: SocketAddr,
    pub(crate) server: SocketAddr,
    pub(crate) connection_id: &'a str,
    pub(crate) sni: Option<&'a str>,
    pub(crate) tenant_id: Option<&'a str>,
    pub(crate) tls_version: &'a str,
    pub(crate) cipher: &'a str,
    pub(crate) cn: Option<&'a str>,
    pub(crate) leaf_der: Option<&'a [u8]>,
    /// A presented certificate was verified against the trust store.
    pub(crate) verified: bool,
}

/// Encodes the header. A TLV that would push the header past 64 KiB
/// (a huge leaf with a raised `max_cert_size`) is left out.
pub(crate) fn encode(info: &ProxyInfo<'_>) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    let family = match (info.client, info.server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            body.extend_from_slice(&c.ip().octets());
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&c.port().to_be_bytes());
            body.extend_from_slice(&s.port().to_be_bytes());
            0x11
        }
        (c, s) => {
            body.extend_from_slice(&v6(c).octets());
            body.extend_from_slice(&v6(s).octets());
            body.extend_from_slice(&c.port().to_be_bytes());
            body.extend_from_slice(&s.port().to_be_bytes());
            0x21
        }
    };
    if let Some(sni) = info.sni {
        tlv(&mut body, PP2_TYPE_AUTHORITY, sni.as_bytes());
    }
    tlv(&mut body, PP2_TYPE_UNIQUE_ID, info.connection_id.as_bytes());

    let mut ssl = Vec::with_capacity(64);
    let client = PP2_CLIENT_SSL
        | if info.leaf_der.is_some() {
            PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
        } else {
            0
        };
    ssl.push(client);
    ssl.extend_from_slice(&u32::from(!info.verified).to_be_bytes());
    tlv(
        &mut ssl,
        PP2_SUBTYPE_SSL_VERSION,
        info.tls_version.as_bytes(),
    );
    if let Some(cn) = info.cn {
        tlv(&mut ssl, PP2_SUBTYPE_SSL_CN, cn.as_bytes());
    }
    tlv(&mut ssl, PP2_SUBTYPE_SSL_CIPHER, info.cipher.as_bytes());
    tlv(&mut body, PP2_TYPE_SSL, &ssl);

    if let Some(tenant) = info.tenant_id {
        tlv(&mut body, PP2_TYPE_CONNLOG_TENANT, tenant.as_bytes());
    }
    if let Some(leaf) = info
        .leaf_der
        .filter(|leaf| body.len() + 3 + leaf.len() <= usize::from(u16::MAX))
    {
        tlv(&mut body, PP2_TYPE_CONNLOG_LEAF, leaf);
    }

    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, PROXY command
    out.push(family);
    // Every TLV was bounded above; the SSL TLV and the rest stay far below.
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn v6(addr: SocketAddr) -> std::net::Ipv6Addr {
    match addr {
        SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
        SocketAddr::V6(a) => *a.ip(),
    }
}

fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&value[..usize::from(len)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_header_layout() {
        let info = ProxyInfo {
            client: "198.18.0.2:40000".parse().unwrap(),
            server: "198.18.0.1:443".parse().unwrap(),
            connection_id: "abc",
            sni: Some("edge.test"),
            tenant_id: None,
            tls_version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            cn: Some("client.test"),
            leaf_der: Some(&[1, 2, 3]),
            verified: true,
        };
        let h = encode(&info);
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(
            usize::from(u16::from_be_bytes([h[14], h[15]])),
            h.len() - 16
        );
        assert_eq!(&h[16..20], &[198, 18, 0, 2]);
        assert_eq!(&h[24..26], &40000u16.to_be_bytes());
        // First TLV: authority.
        assert_eq!(h[28], PP2_TYPE_AUTHORITY);
        assert_eq!(&h[31..40], b"edge.test");
        // Last TLV: the leaf.
        assert_eq!(&h[h.len() - 6..], &[PP2_TYPE_CONNLOG_LEAF, 0, 3, 1, 2, 3]);
    }

    #[test]
    fn v6_family() {
        let info = ProxyInfo {
            client: "[fd00::2]:1".parse().unwrap(),
            server: "[fd00::1]:2".parse().unwrap(),
            connection_id: "x",
            sni: None,
            tenant_id: None,
            tls_version: "TLSv1.2",
            cipher: "c",
            cn: None,
            leaf_der: None,
            verified: false,
        };
        let h = encode(&info);
        assert_eq!(h[13], 0x21);
        assert_eq!(h[16], 0xfd);
        assert_eq!(h[52], PP2_TYPE_UNIQUE_ID);
    }
}
