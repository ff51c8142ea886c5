//! Unit tests of [`Engine`]: one per behaviour of SPEC.md section 5.

use std::sync::Arc;

use super::*;
use crate::function::{CertInfo, Kvs};

const REVOKED: &str = "00:b1:43:ed:93:d2:d8:f3:9d";
const GOOD: &str = "3f:01:02";

/// The revocation function in the style of CloudFront's documentation.
const REVOCATION: &str = r#"
import cf from 'cloudfront';

async function connectionHandler(connection) {
    const kvsHandle = cf.kvs();
    const serial = connection.clientCertificate.certificates.leaf.serialNumber;
    if (await kvsHandle.exists(serial)) {
        connection.logCustomData('REVOKED:' + serial);
        return connection.deny();
    }
    connection.logCustomData('OK:' + serial);
    return connection.allow();
}
"#;

fn program(source: &str) -> Arc<Program> {
    let kvs = Kvs::from_json(format!(r#"{{"{REVOKED}": "key-compromise"}}"#).as_bytes()).unwrap();
    Program::new("test.js", source.as_bytes().to_vec(), kvs).unwrap()
}

fn load_err(source: &str) -> FunctionError {
    Program::new("test.js", source.as_bytes().to_vec(), Kvs::default()).unwrap_err()
}

fn conn(serial: &str) -> ConnectionInfo {
    ConnectionInfo {
        connection_id: "AAECAwQFBgcICQoLDA0ODw==".into(),
        distribution_id: "E2DX1SLDPK0123".into(),
        client_ip: "198.18.0.2".parse().unwrap(),
        endpoint: Some("edge.test".into()),
        leaf: Some(CertInfo {
            serial_number: serial.into(),
            subject: "O=Example, CN=client.test".into(),
            issuer: "CN=Test CA".into(),
            not_before: "2025-06-05T23:28:21Z".into(),
            not_after: "2125-05-12T23:28:21Z".into(),
            sha256_fingerprint: "ab".repeat(32),
        }),
        intermediates: vec![CertInfo {
            serial_number: "02".into(),
            subject: "CN=Intermediate".into(),
            ..CertInfo::default()
        }],
    }
}

fn run(source: &str, conn: &ConnectionInfo) -> Outcome {
    Engine::new(&program(source)).unwrap().run(conn)
}

#[test]
fn revoked_serial_is_denied_with_custom_data() {
    let out = run(REVOCATION, &conn(REVOKED));
    assert_eq!(out.verdict, Verdict::Deny);
    assert_eq!(
        out.custom_data.as_deref(),
        Some(&*format!("REVOKED:{REVOKED}"))
    );
    assert!(!out.poisoned);
}

#[test]
fn unrevoked_serial_is_allowed_with_custom_data() {
    let engine = Engine::new(&program(REVOCATION)).unwrap();
    let out = engine.run(&conn(GOOD));
    assert_eq!(out.verdict, Verdict::Allow);
    assert_eq!(out.custom_data.as_deref(), Some("OK:3f:01:02"));
    // The same compiled engine serves the next connection with fresh state.
    let out = engine.run(&conn(REVOKED));
    assert_eq!(out.verdict, Verdict::Deny);
    assert_eq!(
        out.custom_data.as_deref(),
        Some(&*format!("REVOKED:{REVOKED}"))
    );
}

#[test]
fn cloudfront_doc_example_runs_unchanged() {
    // `clientCertInfo`, `console.log` and `return connection.deny()` as in
    // CloudFront's published revocation example.
    let source = r#"
import cf from 'cloudfront';
async function connectionHandler(connection) {
    const kvsHandle = cf.kvs();
    const clientSerialNumber = connection.clientCertInfo.serialNumber;
    const serialNumberExistsInKvs = await kvsHandle.exists(clientSerialNumber);
    if (serialNumberExistsInKvs) {
        console.log("Connection denied - certificate revoked");
        return connection.deny();
    }
    console.log("Connection allowed");
    return connection.allow();
}"#;
    assert_eq!(run(source, &conn(REVOKED)).verdict, Verdict::Deny);
    assert_eq!(run(source, &conn(GOOD)).verdict, Verdict::Allow);
}

#[test]
fn async_handler_awaiting_kvs_get() {
    let source = r#"
import cf from 'cloudfront';
async function connectionHandler(c) {
    const reason = await cf.kvs().get(c.clientCertInfo.serialNumber);
    c.logCustomData('reason=' + reason);
    c.deny();
}"#;
    let out = run(source, &conn(REVOKED));
    assert_eq!(out.verdict, Verdict::Deny);
    assert_eq!(out.custom_data.as_deref(), Some("reason=key-compromise"));
    // `get` of a missing key rejects, like CloudFront's: uncaught → Error.
    let out = run(source, &conn(GOOD));
    assert_eq!(
        out.verdict,
        Verdict::Error(
            "uncaught exception: Error: Key 3f:01:02 not found at connection-function.js:4:39"
                .into()
        )
    );
}

#[test]
fn sync_handler_sees_every_field() {
    let source = r#"
function connectionHandler(c) {
    const leaf = c.clientCertificate.certificates.leaf;
    const mid = c.clientCertificate.certificates.intermediates;
    c.logCustomData([c.connectionId, c.distributionId, c.clientIp, c.endpoint,
        leaf.subject, leaf.issuer, leaf.validity.notBefore, leaf.validity.notAfter,
        leaf.sha256Fingerprint.length, mid.length, mid[0].subject].join('|'));
    c.allow();
}"#;
    let out = run(source, &conn(GOOD));
    assert_eq!(out.verdict, Verdict::Allow);
    assert_eq!(
        out.custom_data.as_deref(),
        Some(
            "AAECAwQFBgcICQoLDA0ODw==|E2DX1SLDPK0123|198.18.0.2|edge.test|O=Example, \
             CN=client.test|CN=Test CA|2025-06-05T23:28:21Z|2125-05-12T23:28:21Z|64|1|CN=Intermediate"
        )
    );
}

#[test]
fn no_certificate_gives_null_fields() {
    let source = "function connectionHandler(c) { \
        c.logCustomData(String(c.clientCertificate) + ',' + String(c.clientCertInfo)); c.allow(); }";
    let mut info = conn(GOOD);
    info.leaf = None;
    info.intermediates.clear();
    let out = run(source, &info);
    assert_eq!(out.verdict, Verdict::Allow);
    assert_eq!(out.custom_data.as_deref(), Some("null,null"));
}

#[test]
fn calling_nothing_is_denied() {
    let out = run("function connectionHandler(c) { }", &conn(GOOD));
    assert_eq!(out.verdict, Verdict::Deny);
    assert_eq!(out.custom_data, None);
}

#[test]
fn deny_wins_over_allow() {
    let out = run(
        "function connectionHandler(c) { c.deny(); c.allow(); }",
        &conn(GOOD),
    );
    assert_eq!(out.verdict, Verdict::Deny);
}

#[test]
fn throw_is_an_error_with_reason_and_keeps_custom_data() {
    let source = "function connectionHandler(c) {\n  c.logCustomData('before');\n  throw new TypeError('boom');\n}";
    let out = run(source, &conn(GOOD));
    assert_eq!(
        out.verdict,
        Verdict::Error("uncaught exception: TypeError: boom at connection-function.js:3:13".into())
    );
    assert_eq!(out.custom_data.as_deref(), Some("before"));
    assert!(!out.poisoned);
}

#[test]
fn rejected_async_handler_is_an_error() {
    let source = "async function connectionHandler(c) { await null; throw 'plain string'; }";
    let out = run(source, &conn(GOOD));
    assert_eq!(
        out.verdict,
        Verdict::Error("uncaught exception: plain string".into())
    );
}

#[test]
fn infinite_loop_hits_the_time_limit() {
    let engine = Engine::new(&program(
        "function connectionHandler(c) { c.allow(); for (;;) {} }",
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let out = engine.run(&conn(GOOD));
    assert_eq!(out.verdict, Verdict::Error(TIME_LIMIT.into()));
    assert!(out.poisoned);
    // Stopped close to 5 ms of CPU, not after seconds (generous for a busy CI box).
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn infinite_loop_after_await_hits_the_time_limit() {
    let source = "async function connectionHandler(c) { await 1; c.allow(); while (true) {} }";
    let out = run(source, &conn(GOOD));
    assert_eq!(out.verdict, Verdict::Error(TIME_LIMIT.into()));
}

#[test]
fn memory_hog_hits_the_memory_limit() {
    // 80 KB per step: past 2 MB after ~26 steps, well within 5 ms.
    let source = "function connectionHandler(c) { const a = []; \
        for (let i = 0; i < 1e4; i++) a.push(new Array(10000).fill(i)); c.allow(); }";
    let out = run(source, &conn(GOOD));
    assert_eq!(out.verdict, Verdict::Error(MEMORY_LIMIT.into()));
    assert!(out.poisoned);
}

#[test]
fn one_megabyte_is_within_the_memory_limit() {
    let source = "function connectionHandler(c) { const s = 'x'.repeat(1024 * 1024); \
        c.logCustomData(String(s.length)); c.allow(); }";
    let out = run(source, &conn(GOOD));
    assert_eq!(out.verdict, Verdict::Allow);
    assert_eq!(out.custom_data.as_deref(), Some("1048576"));
}

#[test]
fn custom_data_is_truncated_at_a_char_boundary() {
    let source =
        "function connectionHandler(c) { c.logCustomData('a'.repeat(799) + '€€'); c.deny(); }";
    let out = run(source, &conn(GOOD));
    assert_eq!(out.verdict, Verdict::Deny);
    assert_eq!(out.custom_data, Some("a".repeat(799)));
}

#[test]
fn source_over_10_kb_is_rejected_at_load() {
    let source = format!(
        "function connectionHandler(c) {{ c.allow(); }}\n//{}",
        "x".repeat(10 * 1024)
    );
    assert_eq!(
        load_err(&source).to_string(),
        format!(
            "function source of {} bytes is over the 10240-byte limit",
            source.len()
        )
    );
}

#[test]
fn syntax_error_is_rejected_with_line_and_column() {
    let err = load_err("function connectionHandler(c) {\n  c.allow(;\n}\n");
    let FunctionError::Syntax { line, column, .. } = &err else {
        panic!("not a syntax error: {err}");
    };
    assert_eq!((*line, *column), (2, 11), "{err}");
    assert!(
        err.to_string()
            .starts_with("syntax error at line 2, column 11: "),
        "{err}"
    );
}

#[test]
fn missing_handler_is_rejected_at_load() {
    assert_eq!(
        load_err("function handler(c) { c.allow(); }"),
        FunctionError::MissingHandler
    );
    assert_eq!(
        load_err("const connectionHandler = 3;"),
        FunctionError::MissingHandler
    );
}

#[test]
fn exported_and_arrow_handlers_are_found() {
    let a = "export function connectionHandler(c) { c.allow(); }";
    let b = "const connectionHandler = async (c) => c.allow();";
    assert_eq!(run(a, &conn(GOOD)).verdict, Verdict::Allow);
    assert_eq!(run(b, &conn(GOOD)).verdict, Verdict::Allow);
}

#[test]
fn top_level_loop_is_rejected_at_load() {
    let err = load_err("for (;;) {}\nfunction connectionHandler(c) { c.allow(); }");
    assert_eq!(err, FunctionError::TopLevel(TIME_LIMIT.into()));
}

#[test]
fn blocking_globals_are_absent() {
    let source = "function connectionHandler(c) { \
        c.logCustomData(typeof Atomics + ',' + typeof SharedArrayBuffer); c.allow(); }";
    let out = run(source, &conn(GOOD));
    assert_eq!(out.custom_data.as_deref(), Some("undefined,undefined"));
}

#[test]
fn deep_recursion_is_an_error_not_a_crash() {
    let source = "function f(n) { return f(n + 1) + 1; }\n\
        function connectionHandler(c) { f(0); c.allow(); }";
    let out = run(source, &conn(GOOD));
    assert_eq!(
        out.verdict,
        Verdict::Error(
            "uncaught exception: RangeError: Maximum call stack size exceeded at connection-function.js:1:29"
                .into()
        )
    );
}

#[test]
fn catastrophic_regex_hits_the_time_limit() {
    let source = "function connectionHandler(c) { \
        /^(a+)+$/.test('a'.repeat(40) + 'b'); c.allow(); }";
    let out = run(source, &conn(GOOD));
    assert_eq!(out.verdict, Verdict::Error(TIME_LIMIT.into()));
}

#[test]
fn huge_allocations_are_errors_not_crashes() {
    let hog = program(
        "function connectionHandler(c) { \
           if (c.clientCertInfo.serialNumber === 'repeat') 'x'.repeat(1e9); \
           else new Array(1e8).fill(0); c.allow(); }",
    );
    let engine = Engine::new(&hog).unwrap();
    let mut info = conn("repeat");
    let out = engine.run(&info);
    assert_eq!(out.verdict, Verdict::Error(MEMORY_LIMIT.into()));
    let engine = Engine::new(&hog).unwrap();
    info.leaf.as_mut().unwrap().serial_number = "array".into();
    let out = engine.run(&info);
    assert_eq!(out.verdict, Verdict::Error(MEMORY_LIMIT.into()));
}
