//! A process's CPU time and memory from `/proc`, for tests, the synthetic
//! load generator and the benchmarks. `pid` may be `"self"`.

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ: 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// User + system CPU time of the process so far, in µs (10 ms resolution).
pub fn cpu_us(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is parenthesised and may hold spaces: count fields
    // after it. utime and stime are the 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / TICKS_PER_SEC)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …), in KiB.
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    kib_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        field,
    )
}

/// A field of `/proc/meminfo` (`MemFree`, `Cached`, …), in KiB.
pub fn meminfo_kib(field: &str) -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, field)
}

/// The machine's CPU time so far, all CPUs together, in ticks: (idle,
/// total), from the first line of `/proc/stat` (idle counts iowait too).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    machine_ticks_of(stat.lines().next()?)
}

fn machine_ticks_of(line: &str) -> Option<(u64, u64)> {
    let ticks: Vec<u64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((idle, ticks.iter().sum()))
}

/// The value of a `Field:   123 kB` line.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(status_kib("self", "VmRSS").is_some_and(|kib| kib > 0));
        assert!(status_kib("self", "VmHWM").is_some_and(|kib| kib > 0));
        assert_eq!(status_kib("self", "NoSuchField"), None);
        assert!(meminfo_kib("MemFree").is_some_and(|kib| kib > 0));
        assert!(cpu_us("self").is_some());
        assert_eq!(cpu_us("no-such-pid"), None);
        assert!(machine_ticks().is_some_and(|(idle, total)| idle <= total && total > 0));
    }

    #[test]
    fn machine_idle_counts_idle_and_iowait() {
        let line = "cpu  100 5 50 800 20 0 3 0 0 0";
        assert_eq!(machine_ticks_of(line), Some((820, 978)));
        assert_eq!(machine_ticks_of("cpu0 1 2 3 4 5"), None);
        assert_eq!(machine_ticks_of("cpu  1 2 x 4 5"), None);
    }
}
