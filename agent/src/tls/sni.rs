//! SNI lookups: which server certificate, which tenant. Exact names win
//! over `*.` wildcards; a wildcard matches one leftmost label.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Finds the first entry whose names match `sni`, exact names first.
pub(crate) fn lookup<'a, T>(entries: &'a [(Vec<String>, T)], sni: &str) -> Option<&'a T> {
    let sni = sni.trim_end_matches('.').to_ascii_lowercase();
    let exact = entries.iter().find(|(names, _)| names.contains(&sni));
    exact
        .or_else(|| {
            let (_, parent) = sni.split_once('.')?;
            entries.iter().find(|(names, _)| {
                names
                    .iter()
                    .any(|n| n.strip_prefix("*.").is_some_and(|suffix| suffix == parent))
            })
        })
        .map(|(_, v)| v)
}

/// Picks the server certificate by SNI, the listener's default otherwise.
#[derive(Debug)]
pub(crate) struct CertResolver {
    pub(crate) default: Arc<CertifiedKey>,
    pub(crate) by_name: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello
            .server_name()
            .and_then(|sni| lookup(&self.by_name, sni));
        Some(found.unwrap_or(&self.default).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_before_wildcard_and_one_label() {
        let entries = vec![
            (vec!["*.t.test".to_string()], 1),
            (vec!["a.t.test".to_string(), "x.test".to_string()], 2),
        ];
        assert_eq!(lookup(&entries, "a.t.test"), Some(&2));
        assert_eq!(lookup(&entries, "B.T.test"), Some(&1));
        assert_eq!(lookup(&entries, "x.test."), Some(&2));
        assert_eq!(lookup(&entries, "c.b.t.test"), None);
        assert_eq!(lookup(&entries, "t.test"), None);
    }
}
