//! Trail upload throughput to an S3 server on this machine (moto, from the test kit), against
//! the AWS CLI uploading the same file single-stream (`aws s3 cp` with
//! `max_concurrent_requests = 1`) and with its default ten streams. Rounds are interleaved and
//! medians reported; each object is deleted after its round (moto keeps objects in memory).
//!
//! `cargo run --release -p trailgate-benches --bin s3-upload -- --size-mib 512 --rounds 5`
//! (needs `scripts/install-test-deps.sh` for moto; the AWS CLI from `pip install awscli`, found
//! as `$AWS_CLI`, `target/peers-venv/bin/aws` or `aws`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use trailgate_storage::{S3Settings, TrailStore};
use trailgate_testkit::s3::S3Server;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 512)]
    size_mib: usize,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Trailgate's part size (`storage.part_size`).
    #[arg(long, default_value_t = 16)]
    part_mib: usize,
}

fn aws_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("AWS_CLI") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/peers-venv/bin/aws");
    if venv.exists() { venv } else { "aws".into() }
}

fn aws_cp(dir: &Path, s3: &S3Server, file: &Path, key: &str, streams: usize) -> Result<Duration> {
    let config = dir.join(format!("aws-config-{streams}"));
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = us-east-1\ns3 =\n    max_concurrent_requests = {streams}\n    multipart_chunksize = 16MB\n"
        ),
    )?;
    let t = Instant::now();
    let out = Command::new(aws_cli())
        .args([
            "s3",
            "cp",
            "--only-show-errors",
            "--endpoint-url",
            &s3.endpoint(),
        ])
        .arg(file)
        .arg(format!("s3://bench/{key}"))
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .context("running the AWS CLI (pip install awscli, or set AWS_CLI)")?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!("aws s3 cp: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let s3 = S3Server::start()?;
    s3.create_bucket("bench")?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("trail");
    let size = args.size_mib << 20;
    // Incompressible, like a zstd trail.
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&file, &data)?;
    drop(data);
    let settings = S3Settings {
        bucket: "bench".into(),
        prefix: "b".into(),
        endpoint: Some(s3.endpoint()),
        region: "us-east-1".into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        session_token: None,
    };
    let store = TrailStore::new(&settings, args.part_mib << 20)?;
    let mbps = |d: Duration| size as f64 / 1048576.0 / d.as_secs_f64();
    let (mut ours, mut verify, mut single, mut multi) = (vec![], vec![], vec![], vec![]);
    for round in 0..args.rounds {
        let key = store.key_for(&format!("r{round}"));
        let t = Instant::now();
        let up = store.upload(&file, &key).await?;
        ours.push(mbps(t.elapsed()));
        let t = Instant::now();
        store.verify(&key, &up).await?;
        verify.push(mbps(t.elapsed()));
        store.delete(&key).await?;
        let t = aws_cp(dir.path(), &s3, &file, &format!("single-{round}"), 1)?;
        single.push(mbps(t));
        store.delete(&format!("single-{round}")).await?;
        let t = aws_cp(dir.path(), &s3, &file, &format!("multi-{round}"), 10)?;
        multi.push(mbps(t));
        store.delete(&format!("multi-{round}")).await?;
        println!(
            "round {round}: trailgate {:.0} MiB/s (verify {:.0}), aws single-stream {:.0}, aws 10 streams {:.0}",
            ours[round], verify[round], single[round], multi[round]
        );
    }
    let (o, s) = (median(ours), median(single));
    println!(
        "{} MiB, {} rounds, medians: trailgate {o:.0} MiB/s ({} MiB parts, 4 in flight), verify {:.0} MiB/s, \
         aws s3 cp single-stream {s:.0} MiB/s, aws s3 cp 10 streams {:.0} MiB/s; trailgate / single-stream = {:.2}x",
        args.size_mib,
        args.rounds,
        args.part_mib,
        median(verify),
        median(multi),
        o / s
    );
    Ok(())
}
