//! Where the workspace's binaries are.

use std::path::PathBuf;

/// Path of a workspace binary built by `cargo build --bins` (which
/// `cargo xtask test` runs before the tests). Test executables live in
/// `target/<profile>/deps/`, the binaries one level up.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable is in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run the tests with `cargo xtask test` (it builds the binaries first)",
        path.display()
    );
    path
}
