//! Percent-encoding for text formats (SPEC.md section 4): a value never
//! breaks a row. The delimiter's characters, whitespace, control
//! characters, `%` and non-ASCII bytes become `%XX`.

/// Bytes a value must encode besides the always-encoded ones.
#[derive(Debug, Clone)]
pub(crate) struct Escaper {
    extra: [bool; 128],
}

impl Default for Escaper {
    /// Encodes only the always-encoded bytes.
    fn default() -> Self {
        Self {
            extra: [false; 128],
        }
    }
}

impl Escaper {
    /// An escaper for rows delimited by `delimiter`.
    pub(crate) fn new(delimiter: &str) -> Self {
        let mut extra = [false; 128];
        for b in delimiter.bytes().filter(u8::is_ascii) {
            extra[usize::from(b)] = true;
        }
        Self { extra }
    }

    fn needs(&self, b: u8) -> bool {
        b <= b' ' || b == b'%' || b >= 0x7f || self.extra[usize::from(b)]
    }

    /// Appends `value` encoded. A value that is exactly `-` is written
    /// `%2D` so it never reads as "no value".
    pub(crate) fn push(&self, value: &[u8], out: &mut Vec<u8>) {
        if value == b"-" {
            out.extend_from_slice(b"%2D");
            return;
        }
        for &b in value {
            if self.needs(b) {
                push_pct(b, out);
            } else {
                out.push(b);
            }
        }
    }
}

pub(crate) fn push_pct(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(delim: &str, v: &[u8]) -> String {
        let mut out = Vec::new();
        Escaper::new(delim).push(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hostile_values_never_break_rows() {
        assert_eq!(enc("\t", b"C=US, CN=a\tb"), "C=US,%20CN=a%09b");
        assert_eq!(enc("|", b"a|b%c\nd"), "a%7Cb%25c%0Ad");
        assert_eq!(enc("::", b"00:b1"), "00%3Ab1");
        assert_eq!(enc("\t", b"\xff\xfe\xc3\xa9"), "%FF%FE%C3%A9");
        assert_eq!(enc("\t", b"-"), "%2D");
        assert_eq!(enc("\t", b"a-b"), "a-b");
        assert_eq!(enc("\t", b"\x7f\r"), "%7F%0D");
    }
}
