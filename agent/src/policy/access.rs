//! Access rules: allow-lists on the leaf's subject CN and DNS / URI SANs,
//! with `*.` wildcards matching exactly one leftmost label.

use crate::config::AccessRules;

/// True when any configured list has an entry matching the certificate.
pub(crate) fn allows(rules: &AccessRules, cns: &[String], dns: &[String], uris: &[String]) -> bool {
    any_match(&rules.subject_cn, cns)
        || any_match(&rules.dns_san, dns)
        || any_match(&rules.uri_san, uris)
}

fn any_match(patterns: &[String], values: &[String]) -> bool {
    patterns
        .iter()
        .any(|p| values.iter().any(|v| matches(p, v)))
}

/// `*.example.test` matches `a.example.test` but neither `example.test` nor
/// `a.b.example.test`; everything else is an exact (ASCII case-insensitive
/// for names) match.
pub(crate) fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => value
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(matches("*.edge.test", "a.edge.test"));
        assert!(matches("*.edge.test", "A.EDGE.test"));
        assert!(!matches("*.edge.test", "edge.test"));
        assert!(!matches("*.edge.test", "a.b.edge.test"));
        assert!(matches("client.test", "client.test"));
        assert!(!matches("client.test", "other.test"));
    }

    #[test]
    fn any_list_allows() {
        let rules = AccessRules {
            subject_cn: vec!["ok".into()],
            dns_san: vec![],
            uri_san: vec!["spiffe://edge/a".into()],
        };
        assert!(allows(&rules, &["ok".into()], &[], &[]));
        assert!(allows(
            &rules,
            &["no".into()],
            &[],
            &["spiffe://edge/a".into()]
        ));
        assert!(!allows(&rules, &["no".into()], &["ok".into()], &[]));
    }
}
