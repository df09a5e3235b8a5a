//! [`TrailStore`]: one bucket and prefix. Uploads stream the file in parts (a blocking reader
//! hashes each part as it reads it and hands it over without a copy; up to four parts are in
//! flight), small trails go in one request. Verification re-reads the object as stored and
//! compares its size and SHA-256 with the local file's. Downloads stream to a file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::settings::S3Settings;
use crate::{Result, StorageError};

/// Parts in flight at once during an upload.
const PARTS_IN_FLIGHT: usize = 4;

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub size: u64,
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
}

#[derive(Clone)]
pub struct TrailStore {
    store: Arc<dyn ObjectStore>,
    settings: S3Settings,
    part_size: usize,
}

impl std::fmt::Debug for TrailStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TrailStore {
    /// `part_size`: multipart part size in bytes (S3 wants at least 5 MiB).
    pub fn new(s: &S3Settings, part_size: usize) -> Result<TrailStore> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            // A few quick retries per request; longer outages are the uploader's to ride out,
            // with the record saying so meanwhile.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120))
                    .with_allow_http(
                        s.endpoint
                            .as_deref()
                            .is_some_and(|e| e.starts_with("http://")),
                    ),
            );
        if let Some(e) = &s.endpoint {
            // S3-compatible servers (MinIO, Ceph, moto) address buckets by path.
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let (Some(k), Some(sk)) = (&s.access_key_id, &s.secret_access_key) {
            b = b.with_access_key_id(k).with_secret_access_key(sk);
        }
        if let Some(t) = &s.session_token {
            b = b.with_token(t);
        }
        Ok(TrailStore {
            store: Arc::new(b.build()?),
            settings: s.clone(),
            part_size: part_size.max(5 << 20),
        })
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    pub fn key_for(&self, session_id: &str) -> String {
        self.settings.key_for(session_id)
    }

    /// Uploads `local` as `key`; returns its size and SHA-256 (as read while uploading).
    pub async fn upload(&self, local: &Path, key: &str) -> Result<Uploaded> {
        let location = ObjectPath::from(key);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(PARTS_IN_FLIGHT);
        let reader = spawn_reader(local.to_path_buf(), self.part_size, tx);
        let first = rx.recv().await;
        let second = match first {
            Some(_) => rx.recv().await,
            None => None,
        };
        if second.is_none() {
            // One part or none: a single request.
            let body = first.unwrap_or_default();
            self.store.put(&location, PutPayload::from(body)).await?;
            return join_reader(reader).await;
        }
        let mut upload = self.store.put_multipart(&location).await?;
        let mut in_flight = FuturesUnordered::new();
        let mut next = first
            .into_iter()
            .chain(second)
            .collect::<Vec<_>>()
            .into_iter();
        let res: Result<()> = async {
            loop {
                let part = match next.next() {
                    Some(p) => Some(p),
                    None => rx.recv().await,
                };
                let Some(part) = part else { break };
                while in_flight.len() >= PARTS_IN_FLIGHT {
                    if let Some(r) = in_flight.next().await {
                        r?;
                    }
                }
                in_flight.push(upload.put_part(PutPayload::from(part)));
            }
            while let Some(r) = in_flight.next().await {
                r?;
            }
            Ok(())
        }
        .await;
        drop(in_flight);
        match res {
            Ok(()) => {
                let done = join_reader(reader).await?;
                upload.complete().await?;
                Ok(done)
            }
            Err(e) => {
                drop(rx);
                let _ = upload.abort().await;
                let _ = join_reader(reader).await;
                Err(e)
            }
        }
    }

    /// Checks that `key` holds exactly what was uploaded: its size, then the SHA-256 of its
    /// content as read back.
    pub async fn verify(&self, key: &str, expect: &Uploaded) -> Result<()> {
        let meta = self.store.head(&ObjectPath::from(key)).await?;
        if meta.size != expect.size {
            return Err(StorageError::Mismatch {
                key: key.into(),
                reason: format!("{} bytes stored, {} in the trail", meta.size, expect.size),
            });
        }
        let got = self.digest(key).await?;
        if got != *expect {
            return Err(StorageError::Mismatch {
                key: key.into(),
                reason: format!("read back {} bytes with SHA-256 {}", got.size, got.sha256),
            });
        }
        Ok(())
    }

    /// The size and SHA-256 of `key` as stored (streamed, never held in memory).
    pub async fn digest(&self, key: &str) -> Result<Uploaded> {
        let mut stream = self.store.get(&ObjectPath::from(key)).await?.into_stream();
        let mut h = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            h.update(&chunk);
        }
        Ok(Uploaded {
            size,
            sha256: hex::encode(h.finalize()),
        })
    }

    /// Streams `key` into `dest` (written beside it, then renamed: never a partial file).
    pub async fn download_to(&self, key: &str, dest: &Path) -> Result<u64> {
        let tmp = dest.with_extension(format!("part-{}", std::process::id()));
        let res = async {
            let mut stream = self.store.get(&ObjectPath::from(key)).await?.into_stream();
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| StorageError::io(&tmp, e))?;
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                n += chunk.len() as u64;
                f.write_all(&chunk)
                    .await
                    .map_err(|e| StorageError::io(&tmp, e))?;
            }
            f.flush().await.map_err(|e| StorageError::io(&tmp, e))?;
            tokio::fs::rename(&tmp, dest)
                .await
                .map_err(|e| StorageError::io(dest, e))?;
            Ok(n)
        }
        .await;
        if res.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        res
    }

    /// Deletes `key` (retention).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

type Reader = tokio::task::JoinHandle<Result<Uploaded>>;

/// Reads the file in parts on the blocking pool, hashing as it goes.
fn spawn_reader(
    path: std::path::PathBuf,
    part: usize,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) -> Reader {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path).map_err(|e| StorageError::io(&path, e))?;
        let mut h = Sha256::new();
        let mut size = 0u64;
        loop {
            let mut buf = vec![0u8; part];
            let mut filled = 0;
            while filled < part {
                match f.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StorageError::io(&path, e)),
                }
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            h.update(&buf);
            size += filled as u64;
            if tx.blocking_send(Bytes::from(buf)).is_err() {
                // The upload gave up; its error is the one to report.
                break;
            }
            if filled < part {
                break;
            }
        }
        Ok(Uploaded {
            size,
            sha256: hex::encode(h.finalize()),
        })
    })
}

async fn join_reader(r: Reader) -> Result<Uploaded> {
    r.await
        .map_err(|e| StorageError::Settings(format!("upload reader: {e}")))?
}
