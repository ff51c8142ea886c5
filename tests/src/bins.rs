//! Where the workspace's binaries are.

use std::path::PathBuf;

/// Path of a workspace binary built by `cargo build --bins` (which
/// `cargo xtask test` runs before the tests). Test executables live in
/// `target/<profile>/deps/`, other binaries (xtask) in `target/<profile>/`;
/// the binaries under test are in `target/<profile>/` either way.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current executable path");
    let mut dir = exe.parent().expect("executable has a directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps is inside target/<profile>");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run the tests with `cargo xtask test` (it builds the binaries first)",
        path.display()
    );
    path
}
