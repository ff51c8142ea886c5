//! Reading the agent's `[metrics]` endpoint with an independent client
//! (Python's urllib) inside a namespace.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::Netns;

/// `GET http://{addr}{path}` with urllib inside `ns`: (status code, body).
/// Asserts the Prometheus text content type.
pub fn get(ns: &Netns, addr: &str, path: &str) -> Result<(u16, String)> {
    let script = format!(
        "import urllib.request, urllib.error\n\
         try:\n    r = urllib.request.urlopen('http://{addr}{path}', timeout=5)\n    \
         print(r.status); print(r.headers.get('Content-Type')); print(r.read().decode(), end='')\n\
         except urllib.error.HTTPError as e:\n    print(e.code); print(e.headers.get('Content-Type'))\n"
    );
    let out = ns.exec(&["python3", "-c", &script])?;
    let text = String::from_utf8(out.stdout)?;
    let mut lines = text.splitn(3, '\n');
    let code = lines.next().context("status")?.trim().parse()?;
    let content_type = lines.next().context("content type")?;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    Ok((code, lines.next().unwrap_or_default().to_string()))
}

/// Sample lines as `name{labels}` → value.
pub fn samples(body: &str) -> Result<BTreeMap<String, u64>> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').context("sample line")?;
            Ok((name.to_string(), value.parse()?))
        })
        .collect()
}
