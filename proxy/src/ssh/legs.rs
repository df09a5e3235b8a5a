//! The SSH side of a session: the two legs (the client's connection handle, the target's
//! connection) and the target's channel policy. The protocol-neutral part is
//! [`crate::session::Session`].

use std::sync::{Arc, OnceLock};

use super::upstream::UpClient;
use crate::policy::ChannelPolicy;

#[derive(Default)]
pub struct SshLegs {
    /// The client's connection, once the SSH handshake is done.
    pub down: Arc<OnceLock<russh::server::Handle>>,
    /// The target's connection, once it is up.
    pub upstream: OnceLock<Arc<russh::client::Handle<UpClient>>>,
    /// The target's channel policy, known at authentication.
    pub policy: Arc<OnceLock<ChannelPolicy>>,
}
