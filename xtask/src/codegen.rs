//! `cargo xtask codegen`: regenerates `proto/src/gen/` from
//! `proto/proto/**/*.proto` without a system `protoc` (protox parses the
//! files into a descriptor set, tonic-prost-build generates the Rust code).
//! A test below fails when the checked-in copy drifts from the schema.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const PROTO_FILES: &[&str] = &["connlog/v1/connlog.proto"];

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Where the checked-in generated code lives.
pub fn checked_in_dir() -> PathBuf {
    workspace_root().join("proto/src/gen")
}

/// Generates the Rust code for every schema file into `out_dir`.
pub fn generate(out_dir: &Path) -> Result<()> {
    let include = workspace_root().join("proto/proto");
    let fds = protox::compile(PROTO_FILES, [&include]).context("parsing the .proto files")?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .emit_rerun_if_changed(false)
        .out_dir(out_dir)
        .compile_fds(fds)
        .context("generating Rust code")?;
    Ok(())
}

pub fn run() -> Result<()> {
    let dir = checked_in_dir();
    generate(&dir)?;
    eprintln!("xtask: regenerated {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_generated_code_matches_schema() {
        let tmp = tempfile::tempdir().unwrap();
        generate(tmp.path()).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert!(!names.is_empty());
        for name in names {
            let fresh = std::fs::read_to_string(tmp.path().join(&name)).unwrap();
            let kept = std::fs::read_to_string(checked_in_dir().join(&name)).unwrap_or_default();
            assert!(
                fresh == kept,
                "proto/src/gen/{} is stale: run `cargo xtask codegen` and commit the result",
                name.to_string_lossy()
            );
        }
    }
}
