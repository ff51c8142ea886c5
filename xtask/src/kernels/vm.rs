//! Booting a kernel with virtme-ng and running test executables inside.
//!
//! The VM mounts the host's root filesystem read-only, with tmpfs over
//! `/tmp`, `/var/tmp` and `/run`; `target/kernels/run/` is shared
//! writable, for the guest script and what it leaves: one log and one exit
//! code per test executable, and a marker once everything ran. vng's own
//! exit code says nothing about the script's (it is 255 on a host without
//! udev), so the files are the only result. The VM's console (kernel
//! messages) goes to `console.log` beside them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::DebianKernel;
use super::fetch::CACHE;
use crate::shell;

/// Every test of the matrix run in one VM must end within this.
const VM_LIMIT: &str = "1500";

/// One test executable and the tests to run from it.
pub(crate) struct TestRun {
    pub(crate) target: &'static str,
    pub(crate) exe: PathBuf,
    pub(crate) names: &'static [&'static str],
}

/// Boots `image` and runs `runs` in it, one test at a time. Prints every
/// log; returns the test targets that failed (or never reported).
pub(crate) fn run_tests(k: &DebianKernel, image: &Path, runs: &[TestRun]) -> Result<Vec<String>> {
    let dir = Path::new(CACHE).join("run").join(k.release);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let script = dir.join("guest.sh");
    std::fs::write(&script, guest_script(&dir, runs)?)?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let started = std::time::Instant::now();
    let console = std::fs::File::create(dir.join("console.log"))?;
    // The exit code is not the script's (see the module doc).
    let _ = shell::run(
        Command::new("timeout")
            .arg(VM_LIMIT)
            .args([
                "vng",
                "--verbose",
                "--disable-kvm",
                "--memory",
                "2G",
                "--cpus",
                "2",
            ])
            .arg("-r")
            .arg(image)
            .arg("--rwdir")
            .arg(&dir)
            .arg("--")
            .arg(&script)
            .stdout(console.try_clone()?)
            .stderr(console),
    );
    println!(
        "xtask: Linux {} VM ran for {:.0} s",
        k.line,
        started.elapsed().as_secs_f64()
    );
    let mut failed = Vec::new();
    for run in runs {
        let log = std::fs::read_to_string(dir.join(format!("{}.log", run.target)))
            .unwrap_or_else(|_| "(no log: the VM did not get this far)\n".into());
        println!(
            "---- Linux {} ({}): {} ----\n{log}",
            k.line, k.release, run.target
        );
        let rc =
            std::fs::read_to_string(dir.join(format!("{}.rc", run.target))).unwrap_or_default();
        if rc.trim() != "0" {
            failed.push(run.target.to_owned());
        }
    }
    if !dir.join("finished").exists() {
        failed.push("(the VM did not finish)".into());
    }
    Ok(failed)
}

/// The script the VM runs: the host's PATH, a `/run/netns` for `ip netns`,
/// then each executable with its test names (exact match), one thread.
fn guest_script(dir: &Path, runs: &[TestRun]) -> Result<String> {
    let path = std::env::var("PATH").context("PATH is not set")?;
    let workspace = std::env::current_dir()?;
    let mut script = format!(
        "#!/bin/bash\nexport PATH='{path}'\nexport CONNLOG_TEST_PATIENCE=4\nmkdir -p /run/netns\ncd '{}'\necho \"guest: $(uname -r)\"\n",
        workspace.display()
    );
    for run in runs {
        let log = dir.join(format!("{}.log", run.target));
        let rc = dir.join(format!("{}.rc", run.target));
        script.push_str(&format!(
            "'{}' --exact --test-threads=1 {} > '{}' 2>&1\necho $? > '{}'\n",
            run.exe.display(),
            run.names.join(" "),
            log.display(),
            rc.display()
        ));
    }
    script.push_str(&format!("touch '{}'\n", dir.join("finished").display()));
    Ok(script)
}
