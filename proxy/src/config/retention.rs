//! `[retention]`: how long trails and session records are kept. Deletions run at start-up and
//! every `interval`; active sessions are never touched.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Trail files of sessions that ended longer ago than this are deleted (the record stays,
    /// with `trail.integrity = "deleted"`). Absent: kept forever.
    #[serde(default, with = "humantime_serde")]
    pub trails: Option<Duration>,
    /// Session records (metadata) of sessions that ended longer ago than this are deleted,
    /// with their trails. Absent: kept forever.
    #[serde(default, with = "humantime_serde")]
    pub metadata: Option<Duration>,
    /// How often the deletions run.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            trails: None,
            metadata: None,
            interval: default_interval(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(3600)
}

impl RetentionConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("retention.interval: must be above zero".into());
        }
        for (k, v) in [("trails", self.trails), ("metadata", self.metadata)] {
            if v.is_some_and(|d| d.is_zero()) {
                return Err(format!(
                    "retention.{k}: must be above zero (leave it out to keep forever)"
                ));
            }
        }
        if let (Some(t), Some(m)) = (self.trails, self.metadata)
            && m < t
        {
            return Err(format!(
                "retention.metadata ({}) is shorter than retention.trails ({}): a trail would outlive its record",
                humantime::format_duration(m),
                humantime::format_duration(t)
            ));
        }
        Ok(())
    }
}
