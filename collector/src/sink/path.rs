//! Where a record's file goes: the directory template with
//! `{DistributionId}`, `{distributionid}`, `{yyyy}`, `{MM}`, `{dd}`, `{HH}`
//! (hour of eventTimestamp, UTC), optionally Hive style, and the file name
//! `{DistributionId}.{yyyy}-{MM}-{dd}-{HH}.{unique}.{ext}[.gz]`.

use std::path::{Component, Path, PathBuf};

use connlog_proto::civil_from_unix_s;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    DistributionId,
    DistributionIdLower,
    Year,
    Month,
    Day,
    Hour,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    parts: Vec<Part>,
    hive: bool,
}

/// The partition a record belongs to: its distribution and UTC hour.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Partition {
    pub(crate) distribution_id: String,
    /// Unix seconds at the start of the hour.
    pub(crate) hour_start: i64,
}

/// Unix seconds at the start of the hour of a Unix ms timestamp.
fn hour_start(event_timestamp_ms: u64) -> i64 {
    let secs = i64::try_from(event_timestamp_ms / 1000).unwrap_or(i64::MAX);
    secs - secs.rem_euclid(3600)
}

impl Partition {
    pub(crate) fn of(distribution_id: &str, event_timestamp_ms: u64) -> Self {
        Self {
            distribution_id: distribution_id.to_owned(),
            hour_start: hour_start(event_timestamp_ms),
        }
    }

    /// Whether `Partition::of(distribution_id, event_timestamp_ms)` is
    /// this one (without building it).
    pub(crate) fn holds(&self, distribution_id: &str, event_timestamp_ms: u64) -> bool {
        self.hour_start == hour_start(event_timestamp_ms) && self.distribution_id == distribution_id
    }

    fn date(&self) -> (String, String, String, String) {
        let (y, mo, d, h, _, _) = civil_from_unix_s(self.hour_start);
        (
            format!("{y:04}"),
            format!("{mo:02}"),
            format!("{d:02}"),
            format!("{h:02}"),
        )
    }

    /// The distribution id made safe as one path component.
    fn safe_id(&self) -> String {
        let id = if self.distribution_id.is_empty() {
            "-"
        } else {
            &self.distribution_id
        };
        let mut out = String::with_capacity(id.len());
        for b in id.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// The final file name, e.g. `E2DX.2026-11-27-07.<unique>.json.gz`.
    pub(crate) fn file_name(&self, unique: &str, ext: &str, gzip: bool) -> String {
        let (y, mo, d, h) = self.date();
        let gz = if gzip { ".gz" } else { "" };
        format!("{}.{y}-{mo}-{d}-{h}.{unique}.{ext}{gz}", self.safe_id())
    }
}

impl PathTemplate {
    /// Parses a relative directory template; unknown placeholders, absolute
    /// paths and `..` are errors.
    pub(crate) fn parse(text: &str, hive: bool) -> Result<Self, String> {
        if Path::new(text).is_absolute()
            || Path::new(text)
                .components()
                .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(format!("{text:?}: must be relative, without `..`"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in {text:?}"))?;
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "DistributionId" => Part::DistributionId,
                "distributionid" => Part::DistributionIdLower,
                "yyyy" => Part::Year,
                "MM" => Part::Month,
                "dd" => Part::Day,
                "HH" => Part::Hour,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}: expected {{DistributionId}}, \
                         {{distributionid}}, {{yyyy}}, {{MM}}, {{dd}} or {{HH}}"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts, hive })
    }

    /// The directory under `root` for `partition`.
    pub(crate) fn dir(&self, root: &Path, partition: &Partition) -> PathBuf {
        let (y, mo, d, h) = partition.date();
        let id = partition.safe_id();
        let mut out = String::new();
        for part in &self.parts {
            let (hive_key, value) = match part {
                Part::Literal(s) => {
                    out.push_str(s);
                    continue;
                }
                Part::DistributionId => ("DistributionId", id.clone()),
                Part::DistributionIdLower => ("distributionid", id.to_lowercase()),
                Part::Year => ("year", y.clone()),
                Part::Month => ("month", mo.clone()),
                Part::Day => ("day", d.clone()),
                Part::Hour => ("hour", h.clone()),
            };
            if self.hive {
                out.push_str(hive_key);
                out.push('=');
            }
            out.push_str(&value);
        }
        root.join(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-27T07:15:00Z
    const TS_MS: u64 = 1_795_763_700_000;

    #[test]
    fn holds_agrees_with_building_the_partition() {
        let p = Partition::of("D1", 1_749_166_101_000);
        for (id, ms) in [
            ("D1", 1_749_166_101_000),
            ("D1", 1_749_164_400_000),
            ("D1", 1_749_164_399_999),
            ("D2", 1_749_166_101_000),
            ("", 1_749_166_101_000),
        ] {
            assert_eq!(p.holds(id, ms), Partition::of(id, ms) == p, "{id} {ms}");
        }
    }

    #[test]
    fn plain_and_hive_templates() {
        let p = Partition::of("E2DX1SLDPK0123", TS_MS);
        let t = PathTemplate::parse("logs/{DistributionId}/{yyyy}/{MM}/{dd}/{HH}/", false).unwrap();
        assert_eq!(
            t.dir(Path::new("/data"), &p),
            Path::new("/data/logs/E2DX1SLDPK0123/2026/11/27/07/")
        );
        let t = PathTemplate::parse("{distributionid}/{yyyy}/{MM}/{dd}/{HH}", true).unwrap();
        assert_eq!(
            t.dir(Path::new("/data"), &p),
            Path::new("/data/distributionid=e2dx1sldpk0123/year=2026/month=11/day=27/hour=07")
        );
        assert_eq!(
            p.file_name("u1", "json", true),
            "E2DX1SLDPK0123.2026-11-27-07.u1.json.gz"
        );
    }

    #[test]
    fn hostile_distribution_id_stays_one_component() {
        let p = Partition::of("../../etc", TS_MS);
        let t = PathTemplate::parse("{DistributionId}", false).unwrap();
        assert_eq!(
            t.dir(Path::new("/data"), &p),
            Path::new("/data/%2E%2E%2F%2E%2E%2Fetc")
        );
    }

    #[test]
    fn bad_templates_are_rejected() {
        assert!(PathTemplate::parse("/abs", false).is_err());
        assert!(PathTemplate::parse("a/../b", false).is_err());
        assert!(PathTemplate::parse("{yyyy", false).is_err());
        assert!(
            PathTemplate::parse("{hour}", false)
                .unwrap_err()
                .contains("{hour}")
        );
    }
}
