//! The key-value store behind `cf.kvs()`: a JSON object of string keys to
//! string values, read from a local file and checked against the limits.

use std::collections::HashMap;

use super::FunctionError;
use super::limits::{MAX_KVS_FILE_BYTES, MAX_KVS_KEY_BYTES, MAX_KVS_VALUE_BYTES};

/// A loaded, validated key-value store. Immutable: a reload builds a new one.
#[derive(Debug, Default)]
pub struct Kvs {
    entries: HashMap<String, String>,
}

impl Kvs {
    /// Parses the store from the bytes of its file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FunctionError> {
        if bytes.len() > MAX_KVS_FILE_BYTES {
            return Err(FunctionError::KvsTooLarge {
                size: bytes.len(),
                limit: MAX_KVS_FILE_BYTES,
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| FunctionError::KvsJson(e.to_string()))?;
        let serde_json::Value::Object(map) = value else {
            return Err(FunctionError::KvsJson(
                "expected a JSON object of string keys to string values".into(),
            ));
        };
        let mut entries = HashMap::with_capacity(map.len());
        for (key, value) in map {
            if key.len() > MAX_KVS_KEY_BYTES {
                return Err(FunctionError::KvsKeyTooLarge {
                    key: shorten(&key),
                    size: key.len(),
                    limit: MAX_KVS_KEY_BYTES,
                });
            }
            let serde_json::Value::String(value) = value else {
                return Err(FunctionError::KvsJson(format!(
                    "value of key {:?} is not a string",
                    shorten(&key)
                )));
            };
            if value.len() > MAX_KVS_VALUE_BYTES {
                return Err(FunctionError::KvsValueTooLarge {
                    key: shorten(&key),
                    size: value.len(),
                    limit: MAX_KVS_VALUE_BYTES,
                });
            }
            entries.insert(key, value);
        }
        Ok(Self { entries })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A key as shown in an error message: at most 40 characters.
fn shorten(key: &str) -> String {
    match key.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &key[..i]),
        None => key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_map_loads() {
        let kvs = Kvs::from_json(br#"{"01:02": "revoked", "k": ""}"#).unwrap();
        assert_eq!(kvs.len(), 2);
        assert_eq!(kvs.get("01:02"), Some("revoked"));
        assert!(kvs.contains("k"));
        assert!(!kvs.contains("nope"));
    }

    #[test]
    fn non_object_and_non_string_values_are_rejected() {
        let err = Kvs::from_json(b"[1]").unwrap_err();
        assert!(err.to_string().contains("JSON object"), "{err}");
        let err = Kvs::from_json(br#"{"a": 1}"#).unwrap_err();
        assert_eq!(err.to_string(), "kvs: value of key \"a\" is not a string");
        let err = Kvs::from_json(b"{").unwrap_err();
        assert!(err.to_string().starts_with("kvs: EOF"), "{err}");
    }

    #[test]
    fn size_limits_are_enforced() {
        let key = "k".repeat(513);
        let err = Kvs::from_json(format!(r#"{{"{key}": "v"}}"#).as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("key of 513 bytes is over the 512-byte limit"),
            "{err}"
        );
        assert!(Kvs::from_json(format!(r#"{{"{}": "v"}}"#, "k".repeat(512)).as_bytes()).is_ok());
        let value = "v".repeat(1025);
        let err = Kvs::from_json(format!(r#"{{"a": "{value}"}}"#).as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("value of 1025 bytes is over the 1024-byte limit"),
            "{err}"
        );
        let big = vec![b' '; MAX_KVS_FILE_BYTES + 1];
        let err = Kvs::from_json(&big).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kvs file of 5242881 bytes is over the 5242880-byte limit"
        );
    }
}
