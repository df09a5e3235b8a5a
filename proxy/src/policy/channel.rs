//! Channel policies: which channel kinds a target allows. Pure decisions, no I/O.

use std::collections::BTreeSet;

/// Channel kinds a policy can allow.
pub const CHANNEL_KINDS: &[&str] = &[
    "session-shell",
    "session-exec",
    "session-subsystem:<name>",
    "session-subsystem:*",
    "direct-tcpip",
    "forwarded-tcpip",
    "x11",
    "agent",
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChannelKind {
    SessionShell,
    SessionExec,
    /// `None`: any subsystem.
    SessionSubsystem(Option<String>),
    DirectTcpip,
    /// `forwarded-tcpip` (also accepted as `tcpip-forward`): the `tcpip-forward` requests and the
    /// `forwarded-tcpip` channels they bring.
    TcpipForward,
    X11,
    Agent,
}

impl ChannelKind {
    pub fn parse_allow(s: &str) -> Option<ChannelKind> {
        Some(match s {
            "session-shell" => ChannelKind::SessionShell,
            "session-exec" => ChannelKind::SessionExec,
            "session-subsystem:*" | "session-subsystem" => ChannelKind::SessionSubsystem(None),
            "direct-tcpip" => ChannelKind::DirectTcpip,
            "tcpip-forward" | "forwarded-tcpip" => ChannelKind::TcpipForward,
            "x11" => ChannelKind::X11,
            "agent" | "auth-agent" => ChannelKind::Agent,
            other => {
                let name = other.strip_prefix("session-subsystem:")?;
                if name.is_empty() {
                    return None;
                }
                ChannelKind::SessionSubsystem(Some(name.to_string()))
            }
        })
    }
}

/// A compiled channel policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPolicy {
    pub name: String,
    allow: BTreeSet<ChannelKind>,
}

impl ChannelPolicy {
    /// The built-in `default` policy when none is configured: interactive use, commands, sftp and
    /// local forwarding; no remote forwarding, X11 or agent.
    pub fn builtin_default() -> Self {
        Self::from_allow(
            "default",
            [
                "session-shell",
                "session-exec",
                "session-subsystem:sftp",
                "direct-tcpip",
            ]
            .iter()
            .copied(),
        )
    }

    pub fn from_allow<'a>(name: &str, allow: impl Iterator<Item = &'a str>) -> Self {
        ChannelPolicy {
            name: name.to_string(),
            allow: allow.filter_map(ChannelKind::parse_allow).collect(),
        }
    }

    /// Whether any channel kind at all is allowed (the preconnect check).
    pub fn allows_anything(&self) -> bool {
        !self.allow.is_empty()
    }

    pub fn allows(&self, kind: &ChannelKind) -> bool {
        if self.allow.contains(kind) {
            return true;
        }
        matches!(kind, ChannelKind::SessionSubsystem(Some(_)))
            && self.allow.contains(&ChannelKind::SessionSubsystem(None))
    }

    /// Session channels are opened before we know what runs in them; allow the open if any
    /// session use is allowed, and decide on the request.
    pub fn allows_any_session(&self) -> bool {
        self.allow.iter().any(|k| {
            matches!(
                k,
                ChannelKind::SessionShell
                    | ChannelKind::SessionExec
                    | ChannelKind::SessionSubsystem(_)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy() {
        let p = ChannelPolicy::builtin_default();
        assert!(p.allows(&ChannelKind::SessionShell));
        assert!(p.allows(&ChannelKind::SessionSubsystem(Some("sftp".into()))));
        assert!(!p.allows(&ChannelKind::SessionSubsystem(Some("netconf".into()))));
        assert!(!p.allows(&ChannelKind::TcpipForward));
        assert!(!p.allows(&ChannelKind::X11));
        let any = ChannelPolicy::from_allow("x", ["session-subsystem:*"].into_iter());
        assert!(any.allows(&ChannelKind::SessionSubsystem(Some("netconf".into()))));
        assert!(ChannelKind::parse_allow("session-subsystem:").is_none());
        assert!(ChannelKind::parse_allow("telnet").is_none());
    }
}
