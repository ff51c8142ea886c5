//! Builds the kernel programs (`ebpf/connlog-ebpf`) for `bpfel-unknown-none`
//! with the nightly toolchain and bpf-linker, through aya-build; the object
//! lands in `OUT_DIR/connlog-ebpf` and is embedded by `probe::loader`.

fn main() -> anyhow::Result<()> {
    // Read at run time, not with `env!`: a build-script binary reused from
    // another checkout (a shared or copied target dir) would otherwise
    // build that checkout's kernel programs.
    let agent = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf = format!("{agent}/../ebpf/connlog-ebpf");
    let common = format!("{agent}/../ebpf/connlog-common");
    println!("cargo:rerun-if-changed={common}");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "connlog-ebpf",
            root_dir: &ebpf,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}
