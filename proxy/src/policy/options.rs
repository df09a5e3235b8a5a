//! The global VNC options (`GET/PUT /api/v1/configuration/vnc/options`), shaped as the vendor's:
//! `service {enabled, log_level}` and `channel_database_cleanup {enabled, days}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VncOptions {
    #[serde(default)]
    pub service: Service,
    #[serde(default)]
    pub channel_database_cleanup: Cleanup,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// New VNC connections are accepted (running sessions are not affected when switched off).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Logging detail of VNC sessions, 1 (errors) to 7 (trace); 4 is the default (info).
    #[serde(default = "default_level")]
    pub log_level: u8,
}

impl Default for Service {
    fn default() -> Self {
        Service {
            enabled: true,
            log_level: default_level(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_level() -> u8 {
    4
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cleanup {
    #[serde(default)]
    pub enabled: bool,
    /// Metadata of VNC sessions that ended more than this many days ago is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
}

impl VncOptions {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=7).contains(&self.service.log_level) {
            return Err(format!(
                "service.log_level: {} is not a level: use 1 (errors) to 7 (trace)",
                self.service.log_level
            ));
        }
        if self.channel_database_cleanup.enabled
            && self.channel_database_cleanup.days.is_none_or(|d| d == 0)
        {
            return Err("channel_database_cleanup.days: required (at least 1) when enabled".into());
        }
        Ok(())
    }

    /// The tracing level of VNC sessions' logs.
    pub fn tracing_level(&self) -> &'static str {
        match self.service.log_level {
            0..=2 => "error",
            3 => "warn",
            4 => "info",
            5 | 6 => "debug",
            _ => "trace",
        }
    }
}
