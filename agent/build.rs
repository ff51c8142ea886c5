//! Builds the kernel programs (`ebpf/connlog-ebpf`) for `bpfel-unknown-none`
//! with the nightly toolchain and bpf-linker, through aya-build; the object
//! lands in `OUT_DIR/connlog-ebpf` and is embedded by `probe::loader`.

fn main() -> anyhow::Result<()> {
    let ebpf = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/connlog-ebpf");
    let common = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/connlog-common");
    println!("cargo:rerun-if-changed={common}");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "connlog-ebpf",
            root_dir: ebpf,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}
