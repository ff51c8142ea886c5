//! `plain`, `w3c` and `raw`: values joined by the delimiter, one record per
//! line, every value percent-encoded so it never breaks the row.

use connlog_proto::v1::ConnectionRecord;
use connlog_proto::{Field, FieldValue};

use super::escape::Escaper;
use super::json::itoa;

pub(crate) fn push_record(
    fields: &[Field],
    delimiter: &str,
    escaper: &Escaper,
    r: &ConnectionRecord,
    out: &mut Vec<u8>,
) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(delimiter.as_bytes());
        }
        match field.value(r) {
            FieldValue::Absent => out.push(b'-'),
            FieldValue::UInt(n) => out.extend_from_slice(itoa(n, &mut [0u8; 20])),
            FieldValue::Text(bytes) => escaper.push(&bytes, out),
        }
    }
    out.push(b'\n');
}

/// The two header lines every `w3c` file begins with.
pub(crate) fn w3c_header(fields: &[Field], out: &mut Vec<u8>) {
    out.extend_from_slice(b"#Version: 1.0\n#Fields:");
    for field in fields {
        out.push(b' ');
        out.extend_from_slice(field.name().as_bytes());
    }
    out.push(b'\n');
}
