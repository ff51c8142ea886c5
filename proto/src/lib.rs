//! connlog's wire schema, `connlog.v1`: one [`v1::ConnectionRecord`] per
//! connection attempt (every SPEC.md field, typed), the [`v1::RecordBatch`]
//! agents stream to a collector, and the `Collector` gRPC service.
//!
//! The code in `src/gen/` is generated from `proto/connlog/v1/connlog.proto`
//! by `cargo xtask codegen` (no system `protoc`) and checked in; a test in
//! xtask fails when it drifts from the schema.

mod fields;
mod otlp;
mod reuse;
pub mod sample;
mod status;
mod time;
pub mod wire;

/// The generated `connlog.v1` types, client and server.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, reason = "generated code")]
    include!("gen/connlog.v1.rs");
}

pub use fields::{Field, FieldKind, FieldValue};
pub use otlp::{attribute_name, export_request, to_log_record};
pub use reuse::decode_batch_into;
pub use status::{failure_code_from_name, failure_code_name, status_text};
pub use time::{civil_from_unix_s, format_rfc3339_s, parse_rfc3339_s};
