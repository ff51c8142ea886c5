//! The output formats of SPEC.md section 4. Each turns a batch of records
//! into one chunk of bytes that a file sink appends as a unit.

mod escape;
mod json;
mod parquet;
mod text;

use connlog_proto::Field;
use connlog_proto::v1::ConnectionRecord;

pub(crate) use parquet::{journal_append, journal_read, write_parquet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Plain,
    W3c,
    Raw,
    Parquet,
}

impl Format {
    pub(crate) fn parse(name: &str) -> Option<Format> {
        Some(match name {
            "json" => Self::Json,
            "plain" => Self::Plain,
            "w3c" => Self::W3c,
            "raw" => Self::Raw,
            "parquet" => Self::Parquet,
            _ => return None,
        })
    }

    /// The file extension, before any `.gz`.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Plain | Self::W3c | Self::Raw => "log",
            Self::Parquet => "parquet",
        }
    }
}

/// A format with its field selection and delimiter.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    pub(crate) format: Format,
    pub(crate) fields: Vec<Field>,
    delimiter: String,
    escaper: escape::Escaper,
}

impl Encoder {
    /// `raw` always writes every field in the table's order.
    pub(crate) fn new(format: Format, fields: Vec<Field>, delimiter: String) -> Self {
        let fields = if format == Format::Raw {
            Field::ALL.to_vec()
        } else {
            fields
        };
        let escaper = escape::Escaper::new(&delimiter);
        Self {
            format,
            fields,
            delimiter,
            escaper,
        }
    }

    /// Whether a new file starts with a header.
    pub(crate) fn has_header(&self) -> bool {
        self.format == Format::W3c
    }

    /// What a new file starts with (the `w3c` header).
    pub(crate) fn header(&self, out: &mut Vec<u8>) {
        if self.format == Format::W3c {
            text::w3c_header(&self.fields, out);
        }
    }

    /// Appends `records` in this format. Parquet appends to the journal
    /// that becomes a Parquet file when the file is finalised.
    pub(crate) fn encode<'a>(
        &self,
        records: impl IntoIterator<Item = &'a ConnectionRecord>,
        out: &mut Vec<u8>,
    ) {
        for r in records {
            match self.format {
                Format::Json => json::push_record(&self.fields, r, out),
                Format::Plain | Format::W3c | Format::Raw => {
                    text::push_record(&self.fields, &self.delimiter, &self.escaper, r, out);
                }
                Format::Parquet => journal_append(r, out),
            }
        }
    }
}

/// The pipeline benchmark's limit: sample records (successes, as the
/// benchmark's joiner produces) encoded as JSON with the CloudFront fields
/// in one tight loop on one core. Prints records per second.
pub(crate) fn bench_encode(count: u64) {
    let records: Vec<ConnectionRecord> = (0..count)
        .map(|n| connlog_proto::sample::record("bench", "E2DX1SLDPK0123", n * 4))
        .collect();
    let encoder = Encoder::new(Format::Json, Field::cloudfront().to_vec(), "\t".into());
    let mut out = Vec::with_capacity(1 << 20);
    let mut bytes = 0usize;
    let start = std::time::Instant::now();
    for chunk in records.chunks(1000) {
        encoder.encode(chunk, &mut out);
        bytes += out.len();
        out.clear();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"records\":{count},\"bytes\":{bytes},\"secs\":{secs:.3},\"records_per_s\":{:.0}}}",
        count as f64 / secs
    );
}

#[cfg(test)]
mod golden;
