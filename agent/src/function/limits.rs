//! The limits SPEC.md section 5 puts on a connection function, and the
//! truncation of `connectionLogCustomData`.

use std::time::Duration;

/// Largest function source accepted at load.
pub(crate) const MAX_SOURCE_BYTES: usize = 10 * 1024;
/// CPU time one invocation may use (the handler and every job it queues).
pub(crate) const MAX_EXECUTION: Duration = Duration::from_millis(5);
/// Heap the function may use on top of an empty engine.
pub(crate) const MAX_MEMORY_BYTES: usize = 2 * 1024 * 1024;
/// `connectionLogCustomData` is cut to this many bytes of UTF-8.
pub(crate) const MAX_CUSTOM_DATA_BYTES: usize = 800;
/// Largest key-value store file accepted at load.
pub(crate) const MAX_KVS_FILE_BYTES: usize = 5 * 1024 * 1024;
/// Largest key in the key-value store.
pub(crate) const MAX_KVS_KEY_BYTES: usize = 512;
/// Largest value in the key-value store.
pub(crate) const MAX_KVS_VALUE_BYTES: usize = 1024;
/// JavaScript stack the function may use (deep recursion is a RangeError).
pub(crate) const MAX_STACK_BYTES: usize = 256 * 1024;

/// Cuts `data` to at most [`MAX_CUSTOM_DATA_BYTES`] without splitting a
/// character.
pub(crate) fn truncate_custom_data(mut data: String) -> String {
    if data.len() > MAX_CUSTOM_DATA_BYTES {
        let cut = data.floor_char_boundary(MAX_CUSTOM_DATA_BYTES);
        data.truncate(cut);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_data_is_kept() {
        assert_eq!(truncate_custom_data("REVOKED:01".into()), "REVOKED:01");
    }

    #[test]
    fn ascii_is_cut_at_800_bytes() {
        let out = truncate_custom_data("a".repeat(900));
        assert_eq!(out, "a".repeat(800));
    }

    #[test]
    fn truncation_never_splits_a_character() {
        // 799 ASCII bytes then a 3-byte character: byte 800 is inside it.
        let data = format!("{}€tail", "a".repeat(799));
        let out = truncate_custom_data(data);
        assert_eq!(out.len(), 799);
        assert_eq!(out, "a".repeat(799));
        // 266 × '€' = 798 bytes, the 267th would end at 801.
        let out = truncate_custom_data("€".repeat(300));
        assert_eq!(out, "€".repeat(266));
        assert_eq!(out.len(), 798);
    }
}
