//! The SHA-256 of each transferred file, computed on a thread of its own: reading the trail
//! (decompression, chain verification) and hashing the content are the two costs of indexing,
//! about equal, and run on two cores. [`Hashing`] puts a file's parts in order (parts may cross
//! out of order); [`HashWorker`] hashes what it is given through a bounded queue, so memory stays
//! bounded whatever the file sizes.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::error::{RecorderError, Result};

/// Out-of-order content kept to hash a file in order; beyond this the file's SHA-256 is not
/// computed (its coverage still is).
const MAX_PENDING: usize = 16 << 20;

/// Parts in flight to the hashing thread (SFTP writes are at most a few hundred KiB).
const QUEUE: usize = 64;

/// SHA-256 of nothing: the hash of a file no byte of which crossed.
pub const EMPTY: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// One file's content on its way to the hasher, in order.
pub struct Hashing {
    next: u64,
    pub pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    pub broken: bool,
}

impl Hashing {
    pub fn new() -> Hashing {
        Hashing {
            next: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            broken: false,
        }
    }

    /// A part of file `n` at `offset`: hashed now if it is next, kept until it is otherwise.
    pub fn add(&mut self, w: &mut HashWorker, n: usize, offset: u64, data: Vec<u8>) {
        if self.broken {
            return;
        }
        if offset < self.next {
            // A part rewritten or read twice: the content is not one stream any more.
            self.broken = true;
            return;
        }
        if offset > self.next {
            self.pending_bytes += data.len();
            if self.pending_bytes > MAX_PENDING || self.pending.insert(offset, data).is_some() {
                self.broken = true;
                self.pending.clear();
            }
            return;
        }
        self.next += data.len() as u64;
        w.update(n, data);
        while let Some(chunk) = self.pending.remove(&self.next) {
            self.pending_bytes -= chunk.len();
            self.next += chunk.len() as u64;
            w.update(n, chunk);
        }
    }
}

/// The hashing thread and the queue to it.
pub struct HashWorker {
    tx: Option<SyncSender<(usize, Vec<u8>)>>,
    thread: Option<JoinHandle<HashMap<usize, [u8; 32]>>>,
}

impl HashWorker {
    pub fn start() -> HashWorker {
        let (tx, rx) = sync_channel::<(usize, Vec<u8>)>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("files-sha256".into())
            .spawn(move || {
                let mut files: HashMap<usize, Sha256> = HashMap::new();
                for (n, data) in rx {
                    files.entry(n).or_default().update(&data);
                }
                files
                    .into_iter()
                    .map(|(n, h)| (n, h.finalize().into()))
                    .collect()
            })
            .ok();
        HashWorker {
            tx: thread.as_ref().map(|_| tx),
            thread,
        }
    }

    fn update(&mut self, n: usize, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx
            && tx.send((n, data)).is_err()
        {
            // The thread is gone (it panicked): `finish` reports it.
            self.tx = None;
        }
    }

    /// Every file's hash (files it was given content of), once the queue is drained.
    pub fn finish(mut self) -> Result<HashMap<usize, [u8; 32]>> {
        drop(self.tx.take());
        self.thread
            .take()
            .ok_or_else(|| RecorderError::Record("cannot start the hashing thread".into()))?
            .join()
            .map_err(|_| RecorderError::Record("the hashing thread failed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_out_of_order_hash_as_the_whole() {
        let mut w = HashWorker::start();
        let mut h = Hashing::new();
        h.add(&mut w, 0, 5, b"world".to_vec());
        h.add(&mut w, 0, 0, b"hello".to_vec());
        let mut other = Hashing::new();
        other.add(&mut w, 1, 0, Vec::new());
        let d = w.finish().unwrap();
        assert_eq!(d[&0], <[u8; 32]>::from(Sha256::digest(b"helloworld")));
        assert_eq!(d.get(&1), None);
        assert_eq!(EMPTY, <[u8; 32]>::from(Sha256::digest(b"")));
    }
}
