//! The session record: what the catalog stores and the API shows for every connection attempt.
//! The gateway builds it; the catalog persists it; the control API serves it.
//! Field names follow the vendor APIs auditors know (SPS, PrivX, Fudo).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Connected,
    Disconnected,
    Terminated,
    Rejected,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connected => "connected",
            Status::Disconnected => "disconnected",
            Status::Terminated => "terminated",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }
}

/// Connection verdicts, as in SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Verdict {
    #[serde(rename = "accept")]
    Accept,
    #[serde(rename = "accept-terminated")]
    AcceptTerminated,
    #[serde(rename = "gw-auth-fail")]
    GwAuthFail,
    #[serde(rename = "auth-fail")]
    AuthFail,
    #[serde(rename = "key-error")]
    KeyError,
    #[serde(rename = "deny")]
    Deny,
    #[serde(rename = "fail")]
    Fail,
    /// The client broke the protocol (or sent no version line) before any login was tried.
    #[serde(rename = "protocol-error")]
    ProtocolError,
    /// The client did not complete authentication within the login timeout.
    #[serde(rename = "login-timeout")]
    LoginTimeout,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::AcceptTerminated => "accept-terminated",
            Verdict::GwAuthFail => "gw-auth-fail",
            Verdict::AuthFail => "auth-fail",
            Verdict::KeyError => "key-error",
            Verdict::Deny => "deny",
            Verdict::Fail => "fail",
            Verdict::ProtocolError => "protocol-error",
            Verdict::LoginTimeout => "login-timeout",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientAddr {
    pub ip: String,
    pub port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetRef {
    pub name: Option<String>,
    pub ip: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserRef {
    pub name: Option<String>,
    pub server_username: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelRecord {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub verdict: String,
    pub start_time: String,
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub originator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<u32>,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrailRef {
    /// Where the trail is on the gateway's disk: the catalog keeps it in its own column; no
    /// response shows it (trails are reached by `url`).
    #[serde(skip)]
    pub path: Option<String>,
    /// The API path of the trail download, while the session has a trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub size: u64,
    /// `recording`, `sealed`, `incomplete`, `corrupt`, `failed`, `none`.
    pub integrity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the sealed trail is kept: `local` (the recording node's disk), `uploading`,
    /// `stored` (object storage; the local copy is gone) or `upload_failed` (being retried,
    /// `storage_error` says why). Absent while recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_error: Option<String>,
    /// SHA-256 of the trail file (hex), once uploaded and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionRecord {
    pub id: String,
    pub protocol: String,
    pub active: bool,
    pub status: Status,
    pub verdict: Option<Verdict>,
    pub client: ClientAddr,
    pub target: TargetRef,
    pub user: UserRef,
    pub auth_method: Option<String>,
    pub start_time: String,
    pub start_unix_us: i64,
    pub end_time: Option<String>,
    pub end_unix_us: Option<i64>,
    pub duration: Option<f64>,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
    pub end_reason: Option<String>,
    /// A stable code for `end_reason` (see [`EndCode`]).
    #[serde(default)]
    pub end_reason_code: Option<EndCode>,
    /// Who ended the session when neither side closed it: `api token NAME`, `gateway`
    /// (timeouts, shutdown) or `recorder` (recording failed); null otherwise.
    #[serde(default)]
    pub terminated_by: Option<String>,
    /// Time of the last user input (SSH: client data; VNC: key and pointer events).
    #[serde(default)]
    pub last_activity: Option<String>,
    /// Files transferred (SFTP, scp), from the trail's index; 0 until it is indexed.
    #[serde(default)]
    pub files: u32,
    pub channels: Vec<ChannelRecord>,
    pub policies: Vec<String>,
    pub trail: TrailRef,
    pub node_id: String,
    /// VNC sessions: the desktop and how each leg was secured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc: Option<VncRecord>,
}

/// Why a session ended, as a stable code (the text of `end_reason` may change; this does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndCode {
    /// The client closed the connection.
    ClientDisconnected,
    /// The target closed the connection.
    TargetDisconnected,
    /// An I/O or protocol error on either leg after the session began.
    ConnectionError,
    /// The client broke the protocol before logging in.
    ProtocolError,
    /// The client did not log in within the login timeout.
    LoginTimeout,
    /// The gateway refused the client's credentials (or it gave up trying).
    GatewayAuthFailed,
    /// The target refused the credentials the gateway holds.
    TargetAuthFailed,
    /// The target's host key or certificate did not match.
    TargetKeyError,
    /// The target could not be reached or failed before the session began.
    TargetUnreachable,
    /// A policy refused the session (target, channel check, TLS, service disabled).
    Denied,
    /// The trail could not be written: the session was refused or ended.
    RecordingFailed,
    /// An operator ended the session through the API.
    Killed,
    IdleTimeout,
    InactivityTimeout,
    /// The session reached the policy's `max_session`.
    SessionTimeout,
    /// The gateway was shutting down.
    GatewayShutdown,
    /// The gateway stopped without ending the session (crash, kill -9); found at start-up.
    GatewayRestarted,
    /// The gateway node holding the session stopped heartbeating; another node ended it.
    GatewayNodeLost,
}

impl EndCode {
    pub fn as_str(self) -> &'static str {
        match self {
            EndCode::ClientDisconnected => "client_disconnected",
            EndCode::TargetDisconnected => "target_disconnected",
            EndCode::ConnectionError => "connection_error",
            EndCode::ProtocolError => "protocol_error",
            EndCode::LoginTimeout => "login_timeout",
            EndCode::GatewayAuthFailed => "gateway_auth_failed",
            EndCode::TargetAuthFailed => "target_auth_failed",
            EndCode::TargetKeyError => "target_key_error",
            EndCode::TargetUnreachable => "target_unreachable",
            EndCode::Denied => "denied",
            EndCode::RecordingFailed => "recording_failed",
            EndCode::Killed => "killed",
            EndCode::IdleTimeout => "idle_timeout",
            EndCode::InactivityTimeout => "inactivity_timeout",
            EndCode::SessionTimeout => "session_timeout",
            EndCode::GatewayShutdown => "gateway_shutdown",
            EndCode::GatewayRestarted => "gateway_restarted",
            EndCode::GatewayNodeLost => "gateway_node_lost",
        }
    }

    pub fn parse(s: &str) -> Option<EndCode> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// The code a failed connection to the target gets from its verdict.
    pub fn for_verdict(v: Verdict) -> EndCode {
        match v {
            Verdict::AuthFail => EndCode::TargetAuthFailed,
            Verdict::KeyError => EndCode::TargetKeyError,
            Verdict::GwAuthFail => EndCode::GatewayAuthFailed,
            Verdict::Deny => EndCode::Denied,
            Verdict::ProtocolError => EndCode::ProtocolError,
            Verdict::LoginTimeout => EndCode::LoginTimeout,
            Verdict::Fail | Verdict::Accept | Verdict::AcceptTerminated => {
                EndCode::TargetUnreachable
            }
        }
    }
}

/// Channel kinds: one name each, the same in channel policies, session records, trails' `info`
/// and metrics. `ssh_type` is the SSH channel type; a session channel is named by what was
/// asked of it (`shell`: `Some(true)` when a shell was requested, `None` when not known, as in
/// trails written before it was recorded, where any other session channel counts as a shell).
pub fn channel_kind(
    ssh_type: &str,
    command: Option<&str>,
    subsystem: Option<&str>,
    shell: Option<bool>,
) -> String {
    match ssh_type {
        "session" => {
            if command.is_some() {
                "session-exec".into()
            } else if let Some(s) = subsystem {
                format!("session-subsystem:{s}")
            } else if shell.unwrap_or(true) {
                "session-shell".into()
            } else {
                "session".into()
            }
        }
        "auth-agent@openssh.com" | "auth-agent" => "agent".into(),
        "direct-streamlocal@openssh.com" => "direct-streamlocal".into(),
        "forwarded-streamlocal@openssh.com" => "forwarded-streamlocal".into(),
        other => other.into(),
    }
}

/// What a VNC session's handshakes established (also in the trail, as the VNC channel's note).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VncRecord {
    pub desktop_name: String,
    pub width: u16,
    pub height: u16,
    /// The target's pixel format in ServerInit (`bits_per_pixel`, `depth`, `big_endian`,
    /// `true_colour`, maxima and shifts).
    #[schema(value_type = Object)]
    pub pixel_format: serde_json::Value,
    /// Client to gateway.
    pub client: VncLeg,
    /// Gateway to target.
    pub target: VncLeg,
}

/// One leg of a VNC session: RFB version, security type, and TLS (absent without TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VncLeg {
    pub rfb_version: String,
    /// `vencrypt-x509-plain`, `vencrypt-plain` (inside TLS-first), `vnc-auth`, `none`, ...
    pub security: String,
    /// `tls-first`, `vencrypt` or `none`.
    pub tls_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// The lowest TLS version the session's settings policy allowed on this leg (effective:
    /// `TLSv1_2` where the policy says an older one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_minimum: Option<String>,
}

impl Verdict {
    pub fn parse(s: &str) -> Option<Verdict> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}
