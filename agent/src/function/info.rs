//! What a connection function sees: [`ConnectionInfo`] and its JavaScript
//! shape, the `connection` object of SPEC.md section 5.

use std::net::IpAddr;

use rquickjs::{Array, Ctx, Function, Object, Value};

/// One certificate as the function sees it. Strings in the record's formats
/// (serial as `00:b1:…`, subject/issuer as `CN=…, O=…`, RFC 3339 times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertInfo {
    pub serial_number: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256_fingerprint: String,
}

/// The connection a function is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub connection_id: String,
    pub distribution_id: String,
    pub client_ip: IpAddr,
    /// SNI, when the client sent one.
    pub endpoint: Option<String>,
    /// The client's leaf; `None` when it sent no certificate
    /// (`optional` / `passthrough` mode).
    pub leaf: Option<CertInfo>,
    pub intermediates: Vec<CertInfo>,
}

/// The per-runtime functions `allow`, `deny` and `logCustomData`, attached
/// to every `connection` object.
pub(super) struct Methods<'js> {
    pub(super) allow: Function<'js>,
    pub(super) deny: Function<'js>,
    pub(super) log_custom_data: Function<'js>,
}

/// Builds the `connection` object:
/// `{ connectionId, distributionId, clientIp, endpoint, clientCertificate:
/// { certificates: { leaf, intermediates } }, clientCertInfo, allow(),
/// deny(), logCustomData() }`. Without a certificate `clientCertificate`
/// and `clientCertInfo` are `null`. `clientCertInfo` is the leaf, as in
/// CloudFront's documentation examples.
pub(super) fn to_js<'js>(
    ctx: &Ctx<'js>,
    info: &ConnectionInfo,
    methods: &Methods<'js>,
) -> rquickjs::Result<Object<'js>> {
    let conn = Object::new(ctx.clone())?;
    conn.set("connectionId", info.connection_id.as_str())?;
    conn.set("distributionId", info.distribution_id.as_str())?;
    conn.set("clientIp", info.client_ip.to_canonical().to_string())?;
    conn.set("endpoint", info.endpoint.as_deref())?;
    match &info.leaf {
        Some(leaf) => {
            let leaf = cert_to_js(ctx, leaf)?;
            let intermediates = Array::new(ctx.clone())?;
            for (i, cert) in info.intermediates.iter().enumerate() {
                intermediates.set(i, cert_to_js(ctx, cert)?)?;
            }
            let certificates = Object::new(ctx.clone())?;
            certificates.set("leaf", leaf.clone())?;
            certificates.set("intermediates", intermediates)?;
            let client_certificate = Object::new(ctx.clone())?;
            client_certificate.set("certificates", certificates)?;
            conn.set("clientCertificate", client_certificate)?;
            conn.set("clientCertInfo", leaf)?;
        }
        None => {
            conn.set("clientCertificate", Value::new_null(ctx.clone()))?;
            conn.set("clientCertInfo", Value::new_null(ctx.clone()))?;
        }
    }
    conn.set("allow", methods.allow.clone())?;
    conn.set("deny", methods.deny.clone())?;
    conn.set("logCustomData", methods.log_custom_data.clone())?;
    Ok(conn)
}

fn cert_to_js<'js>(ctx: &Ctx<'js>, cert: &CertInfo) -> rquickjs::Result<Object<'js>> {
    let obj = Object::new(ctx.clone())?;
    obj.set("serialNumber", cert.serial_number.as_str())?;
    obj.set("subject", cert.subject.as_str())?;
    obj.set("issuer", cert.issuer.as_str())?;
    let validity = Object::new(ctx.clone())?;
    validity.set("notBefore", cert.not_before.as_str())?;
    validity.set("notAfter", cert.not_after.as_str())?;
    obj.set("validity", validity)?;
    obj.set("sha256Fingerprint", cert.sha256_fingerprint.as_str())?;
    Ok(obj)
}
