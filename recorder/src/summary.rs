//! Per-channel statistics accumulated from records: used by the writer (for the end frame) and by
//! readers of unsealed trails (which have no end frame).

use std::collections::BTreeMap;

use crate::format::*;

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub channels: BTreeMap<u32, ChannelStats>,
    pub records: u64,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
    pub last_time_us: u64,
    pub end: Option<SessionEnd>,
}

impl Stats {
    pub fn apply(&mut self, channel: u32, t: u64, event: &Event) {
        self.records += 1;
        self.last_time_us = self.last_time_us.max(t);
        if let Some((dir, n)) = data_len(event) {
            let (c2s, s2c) = (
                &mut self.bytes_client_to_server,
                &mut self.bytes_server_to_client,
            );
            count(dir, n, c2s, s2c);
        }
        if let Event::End(e) = event {
            self.end = Some(e.clone());
        }
        let Some(c) = self.channel(channel, t) else {
            return;
        };
        match event {
            Event::Open(o) | Event::Denied(o) => {
                c.kind = o.kind.clone();
                c.originator = o.originator.clone();
                c.connected = o.connected.clone();
                c.denied = matches!(event, Event::Denied(_));
                if c.denied {
                    c.end_time_us = Some(t);
                }
            }
            Event::Data { dir, data } | Event::ExtendedData { dir, data, .. } => count(
                *dir,
                data.len(),
                &mut c.bytes_client_to_server,
                &mut c.bytes_server_to_client,
            ),
            Event::Request { request, .. } => match request {
                Request::Exec { command } => c.command = Some(command.clone()),
                Request::Subsystem { name } => c.subsystem = Some(name.clone()),
                Request::Pty { term, .. } => c.term = Some(term.clone()),
                Request::Shell => c.shell = Some(true),
                // The live record marks a channel whose request the policy refused as denied.
                Request::Refused { reason, .. } if reason.starts_with("denied") => c.denied = true,
                Request::ExitStatus { status } => c.exit_status = Some(*status),
                Request::ExitSignal { signal, .. } => c.exit_signal = Some(signal.clone()),
                _ => {}
            },
            Event::Close => c.end_time_us = Some(t),
            _ => {}
        }
    }

    /// As [`apply`](Self::apply) for a data record of `n` bytes (the writer's path, which has no
    /// `Event` at hand).
    pub fn apply_data(&mut self, channel: u32, t: u64, dir: Direction, n: usize) {
        self.records += 1;
        self.last_time_us = self.last_time_us.max(t);
        self.add_data_bytes(channel, t, dir, n);
    }

    /// Counts the payload bytes of one piece of a data record that the writer merges with its
    /// neighbours; the record itself is counted by [`apply`](Self::apply) with empty data.
    pub fn add_data_bytes(&mut self, channel: u32, t: u64, dir: Direction, n: usize) {
        let (c2s, s2c) = (
            &mut self.bytes_client_to_server,
            &mut self.bytes_server_to_client,
        );
        count(dir, n, c2s, s2c);
        if let Some(c) = self.channel(channel, t) {
            count(
                dir,
                n,
                &mut c.bytes_client_to_server,
                &mut c.bytes_server_to_client,
            );
        }
    }

    /// A channel's statistics, created at its first record; `None` for channel 0, which carries
    /// session-level events only.
    fn channel(&mut self, channel: u32, t: u64) -> Option<&mut ChannelStats> {
        if channel == 0 {
            return None;
        }
        Some(
            self.channels
                .entry(channel)
                .or_insert_with(|| ChannelStats {
                    id: channel,
                    start_time_us: t,
                    shell: Some(false),
                    ..Default::default()
                }),
        )
    }

    pub fn apply_record(&mut self, r: &Record) {
        self.apply(r.channel, r.time_us, &r.event);
    }
}

/// Adds `n` bytes to the counter of `dir`.
fn count(dir: Direction, n: usize, c2s: &mut u64, s2c: &mut u64) {
    match dir {
        Direction::ClientToServer => *c2s += n as u64,
        Direction::ServerToClient => *s2c += n as u64,
    }
}
