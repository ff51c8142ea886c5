//! The one duration syntax of the config file: a whole number and a unit,
//! `ms`, `s` or `m` (`"250ms"`, `"10s"`, `"5m"`), more than zero.

use std::time::Duration;

use super::ConfigError;

/// `text` as a duration, `None` when the key is absent; errors name `key`.
pub(super) fn duration(text: Option<&str>, key: &str) -> Result<Option<Duration>, ConfigError> {
    let Some(text) = text else { return Ok(None) };
    let bad = || {
        ConfigError::invalid(
            key,
            format!("{text:?}: expected a duration like \"250ms\", \"10s\", \"5m\""),
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be more than zero"));
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(
            duration(Some("250ms"), "k").unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            duration(Some("3s"), "k").unwrap(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            duration(Some("5m"), "k").unwrap(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(duration(None, "k").unwrap(), None);
        for bad in ["0s", "s", "5", "1h", "1.5s", " 3s", "-1s"] {
            assert!(duration(Some(bad), "k").is_err(), "{bad}");
        }
    }
}
