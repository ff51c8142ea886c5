//! A client certificate's fields in SPEC.md's formats: serial, subject,
//! issuer, validity, SHA-256, SANs.

use std::fmt::Write as _;

use connlog_proto::format_rfc3339_s;
use x509_parser::der_parser::asn1_rs::{Any, Oid, Tag};
use x509_parser::prelude::*;

use crate::ClientCertInfo;

/// The fields of a DER certificate, or `None` if it does not parse.
pub(crate) fn from_der(der: &[u8]) -> Option<ClientCertInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(from_parsed(&cert, der))
}

pub(crate) fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> ClientCertInfo {
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    ClientCertInfo {
        serial: hex_colon(cert.raw_serial()),
        subject: name(cert.subject()),
        issuer: name(cert.issuer()),
        validity: format!(
            "NotBefore={};NotAfter={}",
            format_rfc3339_s(not_before),
            format_rfc3339_s(not_after)
        ),
        not_before_s: Some(not_before),
        not_after_s: Some(not_after),
        sha256: sha256_hex(der),
        sans: sans(cert),
    }
}

/// Lowercase hex of SHA-256 over `der`.
pub(crate) fn sha256_hex(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn hex_colon(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// RDNs in certificate order as `TYPE=value`, joined by `, `; the values of
/// a multi-valued RDN are joined by `+`.
pub(crate) fn name(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&attribute_type(atv.attr_type()));
            out.push('=');
            out.push_str(&attribute_value(atv.attr_value()));
        }
    }
    out
}

/// The subject's common names, decoded as in [`name`].
pub(crate) fn common_names(name: &X509Name<'_>) -> Vec<String> {
    name.iter_common_name()
        .map(|atv| attribute_value(atv.attr_value()))
        .collect()
}

fn attribute_type(oid: &Oid<'_>) -> String {
    let short = match oid.to_id_string().as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.17" => "postalCode",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        other => return other.to_string(),
    };
    short.to_string()
}

/// Decodes a DirectoryString (or IA5String) as text. Values are kept raw;
/// bytes that are not valid in their encoding become U+FFFD, since records
/// carry UTF-8 strings.
fn attribute_value(any: &Any<'_>) -> String {
    let data = any.data;
    match any.tag() {
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            char::decode_utf16(units)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        Tag::UniversalString => data
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                char::from_u32(u32::from_be_bytes(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        // TeletexString is in practice Latin-1.
        Tag::TeletexString => data.iter().map(|&b| char::from(b)).collect(),
        _ => String::from_utf8_lossy(data).into_owned(),
    }
}

/// `DNS:a.test,URI:spiffe://x,IP:198.18.0.2,email:a@b.test`.
fn sans(cert: &X509Certificate<'_>) -> String {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for gn in &ext.value.general_names {
        match gn {
            GeneralName::DNSName(s) => parts.push(format!("DNS:{s}")),
            GeneralName::URI(s) => parts.push(format!("URI:{s}")),
            GeneralName::RFC822Name(s) => parts.push(format!("email:{s}")),
            GeneralName::IPAddress(b) => match b.len() {
                4 => {
                    let a: [u8; 4] = [b[0], b[1], b[2], b[3]];
                    parts.push(format!("IP:{}", std::net::Ipv4Addr::from(a)));
                }
                16 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(b);
                    parts.push(format!("IP:{}", std::net::Ipv6Addr::from(a)));
                }
                _ => parts.push(format!("IP:{}", hex_colon(b))),
            },
            _ => {}
        }
    }
    parts.join(",")
}

/// DNS and URI SANs, for access rules.
pub(crate) fn san_names(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    let (mut dns, mut uri) = (Vec::new(), Vec::new());
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for gn in &ext.value.general_names {
            match gn {
                GeneralName::DNSName(s) => dns.push(s.to_string()),
                GeneralName::URI(s) => uri.push(s.to_string()),
                _ => {}
            }
        }
    }
    (dns, uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType, SerialNumber};

    fn cert_with(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn formats_match_spec() {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for (t, v) in [
            (DnType::CountryName, "US"),
            (DnType::StateOrProvinceName, "WA"),
            (DnType::LocalityName, "Seattle"),
            (DnType::OrganizationName, "Example"),
            (DnType::OrganizationalUnitName, "Edge"),
            (DnType::CommonName, "client.test"),
        ] {
            dn.push(t, v);
        }
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from_slice(&[0xb1, 0x43, 0xed, 0x93]));
        params.not_before = rcgen::date_time_ymd(2025, 6, 5);
        params.not_after = rcgen::date_time_ymd(2125, 5, 12);
        params.subject_alt_names = vec![
            SanType::DnsName("a.test".try_into().unwrap()),
            SanType::URI("spiffe://x".try_into().unwrap()),
            SanType::IpAddress("198.18.0.2".parse().unwrap()),
            SanType::IpAddress("fd00::2".parse().unwrap()),
        ];
        let der = cert_with(params);
        let info = from_der(&der).unwrap();
        assert_eq!(info.serial, "00:b1:43:ed:93");
        assert_eq!(
            info.subject,
            "C=US, ST=WA, L=Seattle, O=Example, OU=Edge, CN=client.test"
        );
        assert_eq!(info.issuer, info.subject);
        assert_eq!(
            info.validity,
            "NotBefore=2025-06-05T00:00:00Z;NotAfter=2125-05-12T00:00:00Z"
        );
        // The seconds the joiner puts in the record are the text's times.
        assert_eq!(info.not_before_s, Some(1_749_081_600));
        assert_eq!(info.not_after_s, Some(4_902_681_600));
        assert_eq!(
            info.not_before_s,
            connlog_proto::parse_rfc3339_s("2025-06-05T00:00:00Z")
        );
        assert_eq!(
            info.sans,
            "DNS:a.test,URI:spiffe://x,IP:198.18.0.2,IP:fd00::2"
        );
        assert_eq!(info.sha256, sha256_hex(&der));
        assert_eq!(info.sha256.len(), 64);
    }

    #[test]
    fn serial_without_high_bit_has_no_leading_zero() {
        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from_slice(&[0x01, 0x02]));
        let info = from_der(&cert_with(params)).unwrap();
        assert_eq!(info.serial, "01:02");
        assert_eq!(info.sans, "");
    }

    #[test]
    fn hostile_subject_is_kept_raw() {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "a\nb\tc, d=e\"f");
        params.distinguished_name = dn;
        let info = from_der(&cert_with(params)).unwrap();
        assert_eq!(info.subject, "CN=a\nb\tc, d=e\"f");
    }

    #[test]
    fn garbage_does_not_parse() {
        assert_eq!(from_der(b"not a certificate"), None);
    }
}
