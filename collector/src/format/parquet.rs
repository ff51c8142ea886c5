//! `parquet`: typed columns, null when empty. Records are first appended
//! to a journal (length-delimited protobuf) so a batch is durable before it
//! is acknowledged; finalising a file turns its journal into one Parquet
//! file with a row group per 64k records.

use std::io::Write;
use std::sync::Arc;

use connlog_proto::v1::ConnectionRecord;
use connlog_proto::{Field, FieldKind, FieldValue};
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use prost::Message;

use super::escape::Escaper;

const ROW_GROUP: usize = 65_536;

/// Appends one record to a journal.
pub(crate) fn journal_append(r: &ConnectionRecord, out: &mut Vec<u8>) {
    // Encoding into a Vec only fails when the buffer cannot grow.
    let _ = r.encode_length_delimited(out);
}

/// Reads a journal's records; a torn record at the end (a crash mid-write)
/// is ignored. Returns the records and the length of the intact prefix.
pub(crate) fn journal_read(mut bytes: &[u8]) -> (Vec<ConnectionRecord>, usize) {
    let total = bytes.len();
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let before = bytes;
        match ConnectionRecord::decode_length_delimited(&mut bytes) {
            Ok(r) => records.push(r),
            Err(_) => {
                bytes = before;
                break;
            }
        }
    }
    (records, total - bytes.len())
}

fn column_type(field: Field) -> Result<Type, ParquetError> {
    let (physical, logical) = match field.kind() {
        FieldKind::TimestampMs => (
            Physical::INT64,
            LogicalType::timestamp(true, TimeUnit::MILLIS),
        ),
        FieldKind::UInt => (Physical::INT64, LogicalType::integer(64, true)),
        FieldKind::Text => (Physical::BYTE_ARRAY, LogicalType::String),
    };
    Type::primitive_type_builder(field.name(), physical)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(Some(logical))
        .build()
}

/// Writes `records` as one Parquet file with the selected columns.
pub(crate) fn write_parquet<W: Write + Send>(
    fields: &[Field],
    records: &[ConnectionRecord],
    out: W,
) -> Result<(), ParquetError> {
    let columns = fields
        .iter()
        .map(|f| column_type(*f).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = Type::group_type_builder("connlog")
        .with_fields(columns)
        .build()?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))?;
    for chunk in records.chunks(ROW_GROUP) {
        let mut group = writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            let field = fields[index];
            index += 1;
            let mut defs = Vec::with_capacity(chunk.len());
            match field.kind() {
                FieldKind::TimestampMs | FieldKind::UInt => {
                    let mut values = Vec::with_capacity(chunk.len());
                    for r in chunk {
                        match field.value(r) {
                            FieldValue::UInt(n) => {
                                defs.push(1);
                                values.push(i64::try_from(n).unwrap_or(i64::MAX));
                            }
                            _ => defs.push(0),
                        }
                    }
                    column
                        .typed::<Int64Type>()
                        .write_batch(&values, Some(&defs), None)?;
                }
                FieldKind::Text => {
                    let mut values = Vec::with_capacity(chunk.len());
                    for r in chunk {
                        match field.value(r) {
                            FieldValue::Text(bytes) => {
                                defs.push(1);
                                values.push(ByteArray::from(utf8_or_escaped(&bytes)));
                            }
                            _ => defs.push(0),
                        }
                    }
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, Some(&defs), None)?;
                }
            }
            column.close()?;
        }
        group.close()?;
    }
    writer.close()?;
    Ok(())
}

/// Parquet strings are UTF-8: other bytes are percent-encoded, as in JSON.
fn utf8_or_escaped(bytes: &[u8]) -> Vec<u8> {
    if std::str::from_utf8(bytes).is_ok() {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len() * 3);
    Escaper::default().push(bytes, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_survives_a_torn_tail() {
        let a = ConnectionRecord {
            connection_id: "a".into(),
            ..Default::default()
        };
        let b = ConnectionRecord {
            connection_id: "b".into(),
            ..Default::default()
        };
        let mut out = Vec::new();
        journal_append(&a, &mut out);
        let intact = out.len();
        journal_append(&b, &mut out);
        out.pop();
        let (records, len) = journal_read(&out);
        assert_eq!(records, vec![a]);
        assert_eq!(len, intact);
    }
}
