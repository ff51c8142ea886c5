//! `json`: one object per line, keys in selection order, every value a
//! string (AWS's vended-log convention), `-` when empty.
//!
//! Valid UTF-8 values are kept as they are, JSON-escaped. A value that is
//! not UTF-8 (an attacker's certificate subject can be) is percent-encoded
//! as in the text formats (and `"`, `\\` too), so the line stays valid JSON and lossless.

use connlog_proto::v1::ConnectionRecord;
use connlog_proto::{Field, FieldValue};

use super::escape::Escaper;

pub(crate) fn push_record(fields: &[Field], r: &ConnectionRecord, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(field.name().as_bytes());
        out.extend_from_slice(b"\":\"");
        match field.value(r) {
            FieldValue::Absent => out.push(b'-'),
            FieldValue::UInt(n) => {
                out.extend_from_slice(itoa(n, &mut [0u8; 20]));
            }
            FieldValue::Text(bytes) => match std::str::from_utf8(&bytes) {
                Ok(s) => push_json_str(s, out),
                Err(_) => Escaper::new("\"\\").push(&bytes, out),
            },
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// Decimal digits of `n` without allocating.
pub(crate) fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

fn push_json_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..0x20 => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itoa_matches_display() {
        for n in [0, 7, 10, 12137, u64::MAX] {
            assert_eq!(itoa(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn escapes_make_valid_json() {
        let mut out = Vec::new();
        push_json_str("a\"b\\c\nd\u{1}é", &mut out);
        let text = format!("\"{}\"", String::from_utf8(out).unwrap());
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }
}
