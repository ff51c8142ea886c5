//! A Debian kernel package, from Debian's package registry, ready to boot:
//! downloaded with apt into `target/kernels/` (its own lists and cache for
//! suites other than the host's, so the host's apt state is untouched),
//! unpacked, its modules under `/usr/lib/modules/<release>` where the VM
//! looks for them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::DebianKernel;
use crate::shell;

pub(crate) const CACHE: &str = "target/kernels";

/// The kernel image to boot, fetching and unpacking the package if needed.
pub(crate) fn kernel(k: &DebianKernel) -> Result<PathBuf> {
    let cache = Path::new(CACHE);
    let image = cache.join("boot").join(format!("vmlinuz-{}", k.release));
    let modules = Path::new("/usr/lib/modules").join(k.release);
    if image.exists() && modules.join("modules.dep").exists() {
        return Ok(image);
    }
    let unpacked = cache.join(k.release);
    if !unpacked.join("boot").exists() {
        let deb = download(k, cache)?;
        std::fs::create_dir_all(&unpacked)?;
        shell::run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    if !modules.exists() {
        // Debian 13 ships them under usr/lib, older releases under lib.
        let shipped = ["usr/lib/modules", "lib/modules"]
            .iter()
            .map(|dir| unpacked.join(dir).join(k.release))
            .find(|dir| dir.exists())
            .with_context(|| format!("{} has no modules", k.package))?;
        shell::run(Command::new("cp").arg("-a").arg(&shipped).arg(&modules))?;
    }
    // The package ships no modules.dep: the VM's modprobe needs it.
    shell::run(Command::new("depmod").args(["-a", k.release]))?;
    // Outside the unpacked tree, so that virtme-ng takes the modules from
    // /usr/lib/modules (the VM sees only the host's root filesystem).
    std::fs::create_dir_all(image.parent().context("boot dir")?)?;
    std::fs::copy(
        unpacked.join("boot").join(format!("vmlinuz-{}", k.release)),
        &image,
    )
    .with_context(|| format!("copying the kernel image of {}", k.package))?;
    Ok(image)
}

/// `apt-get download` of the package from its suite, with the host's
/// Debian mirror and keyring.
fn download(k: &DebianKernel, cache: &Path) -> Result<PathBuf> {
    let apt = created(&cache.join(format!("apt-{}", k.suite)))?;
    let sources = apt.join("sources.list");
    std::fs::write(&sources, sources_for(k.suite)?)?;
    std::fs::create_dir_all(apt.join("lists/partial"))?;
    std::fs::create_dir_all(apt.join("cache/archives/partial"))?;
    let options = [
        format!("Dir::Etc::SourceList={}", sources.display()),
        "Dir::Etc::SourceParts=/dev/null".to_owned(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
    ];
    let apt_get = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        for o in &options {
            cmd.args(["-o", o]);
        }
        cmd.args(args).current_dir(&apt);
        cmd
    };
    shell::run(&mut apt_get(&["update", "-q"]))
        .with_context(|| format!("reading Debian {}'s package lists", k.suite))?;
    shell::run(&mut apt_get(&["download", "-q", k.package]))
        .with_context(|| format!("downloading {} from Debian {}", k.package, k.suite))?;
    let prefix = format!("{}_", k.package);
    for entry in std::fs::read_dir(&apt)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(path);
        }
    }
    bail!(
        "apt-get download left no {prefix}*.deb in {}",
        apt.display()
    )
}

/// One-line sources for `suite` (and its updates and security suites),
/// from the mirrors the host's own Debian sources name.
fn sources_for(suite: &str) -> Result<String> {
    let host = host_suite()?;
    let mut lines = String::new();
    for (uri, suites) in host_sources()? {
        for s in suites {
            if let Some(rest) = s.strip_prefix(&host) {
                lines.push_str(&format!("deb {uri} {suite}{rest} main\n"));
            }
        }
    }
    if lines.is_empty() {
        bail!("no Debian {host} mirror in the host's apt sources to take {suite} from");
    }
    Ok(lines)
}

fn host_suite() -> Result<String> {
    let release = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .context("/etc/os-release has no VERSION_CODENAME (not Debian?)")
}

/// (URI, suites) of the host's `deb` sources, deb822 and one-line.
fn host_sources() -> Result<Vec<(String, Vec<String>)>> {
    let mut found = Vec::new();
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.filter_map(|e| e.ok().map(|e| e.path())));
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => found.extend(deb822(&text)),
            _ if file.ends_with("sources.list") || file.extension() == Some("list".as_ref()) => {
                found.extend(one_line(&text))
            }
            _ => {}
        }
    }
    Ok(found)
}

fn deb822(text: &str) -> Vec<(String, Vec<String>)> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
            };
            if !field("Types:")?.split_whitespace().any(|t| t == "deb") {
                return None;
            }
            let uri = field("URIs:")?.split_whitespace().next()?.to_owned();
            let suites = field("Suites:")?
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            Some((uri, suites))
        })
        .collect()
}

fn one_line(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace().filter(|w| !w.starts_with('['));
            (words.next()? == "deb").then_some(())?;
            Some((words.next()?.to_owned(), vec![words.next()?.to_owned()]))
        })
        .collect()
}

/// `dir`, created if missing, as an absolute path (apt runs elsewhere).
fn created(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.canonicalize()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_source_formats_give_mirror_and_suites() {
        let stanzas = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb-src\nURIs: http://src.example\nSuites: bookworm\n";
        assert_eq!(
            deb822(stanzas),
            [(
                "http://mirror.example/debian".to_owned(),
                vec!["bookworm".to_owned(), "bookworm-updates".to_owned()]
            )]
        );
        let list = "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\ndeb-src http://x y main\n";
        assert_eq!(
            one_line(list),
            [(
                "http://mirror.example/debian".to_owned(),
                vec!["bookworm".to_owned()]
            )]
        );
    }
}
