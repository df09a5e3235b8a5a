//! `trailgate trail ...` and `trailgate keygen`: thin wrappers over `trailgate_recorder`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use trailgate_recorder::{Direction, Integrity, export, keys, vnc};

#[derive(Debug, Subcommand)]
pub enum TrailCmd {
    /// Session metadata, channels with byte counts, duration, end reason, integrity.
    Info {
        /// The trail file.
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain and seal. Exit 0: sealed and intact; 3: intact but incomplete;
    /// 1: tampered or corrupt.
    Verify {
        /// The trail file.
        file: PathBuf,
        /// The gateway's trail-signing public key (PEM file, or base64 of the raw key): also proves
        /// which gateway sealed the trail.
        #[arg(long)]
        key: Option<String>,
    },
    /// The raw bytes of one channel's stream, exactly as they crossed the gateway.
    Cat {
        /// The trail file.
        file: PathBuf,
        #[arg(long)]
        channel: u32,
        /// Only one direction (c2s: client to server; s2c: server to client, without stderr).
        #[arg(long)]
        direction: Option<Direction>,
        /// Only extended data (stderr is code 1).
        #[arg(long, conflicts_with = "direction")]
        stderr: bool,
    },
    /// Convert a session to another format: a terminal channel to asciicast v2 (`asciicast`),
    /// a VNC session to FBS 001.000 (`fbs`, replayed by VNC players).
    Export {
        /// The trail file.
        file: PathBuf,
        #[arg(long, default_value = "asciicast")]
        format: String,
        /// The terminal channel (asciicast).
        #[arg(long)]
        channel: Option<u32>,
        /// Include input (keystroke) events (asciicast).
        #[arg(long)]
        input: bool,
        /// Write here instead of standard output.
        #[arg(long, short, visible_alias = "out")]
        output: Option<PathBuf>,
    },
    /// Files that crossed over SFTP (and scp, which uses SFTP): path, direction, bytes,
    /// SHA-256, status; and the other file operations.
    Files {
        /// The trail file.
        file: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Commands run in the session, with their times: lines typed in terminal channels and exec
    /// channels' commands. Best effort, reconstructed from the recorded input and the server's
    /// echo: `~` marks a line that used history, completion or keys not followed; lines the
    /// server never echoed (passwords at prompts) are left out.
    Commands {
        /// The trail file.
        file: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write one transferred file's content exactly as it crossed.
    Extract {
        /// The trail file.
        file: PathBuf,
        /// The file's number, as `trail files` lists it.
        #[arg(long = "file")]
        n: usize,
        /// Where to write it.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// The screen of a VNC session at some moment, as a PNG image.
    Snapshot {
        /// The trail file.
        file: PathBuf,
        /// Seconds since the session start (default: the end of the session).
        #[arg(long)]
        at: Option<f64>,
        /// The PNG file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Replay a terminal channel in this terminal with its original timing.
    Play {
        /// The trail file.
        file: PathBuf,
        /// The terminal channel (default: the first).
        #[arg(long)]
        channel: Option<u32>,
        /// Playback speed (2 = twice as fast).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Cap pauses at this many seconds.
        #[arg(long)]
        idle_limit: Option<f64>,
    },
}

fn integrity_exit(i: &Integrity) -> ExitCode {
    match i {
        Integrity::Sealed => ExitCode::SUCCESS,
        Integrity::Incomplete { .. } => ExitCode::from(3),
        Integrity::Corrupt { .. } => ExitCode::from(1),
    }
}

/// Non-fatal integrity notes for commands whose main output is data.
fn warn_integrity(i: &Integrity) {
    match i {
        Integrity::Sealed => {}
        Integrity::Incomplete { reason } => {
            eprintln!("trailgate: note: trail is incomplete ({reason})")
        }
        Integrity::Corrupt { offset, reason } => eprintln!(
            "trailgate: warning: trail is corrupt at offset {offset}: {reason}; output stops there"
        ),
    }
}

pub fn run(cmd: TrailCmd) -> Result<ExitCode> {
    match cmd {
        TrailCmd::Info { file, json } => info(&file, json),
        TrailCmd::Files { file, json } => files(&file, json),
        TrailCmd::Commands { file, json } => commands(&file, json),
        TrailCmd::Extract { file, n, out } => extract(&file, n, &out),
        TrailCmd::Verify { file, key } => verify(&file, key.as_deref()),
        TrailCmd::Cat {
            file,
            channel,
            direction,
            stderr,
        } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
            let i = if stderr {
                export::cat_extended(&file, channel, 1, &mut out)?
            } else {
                export::cat(&file, channel, direction, &mut out)?
            };
            out.flush()?;
            warn_integrity(&i);
            Ok(if matches!(i, Integrity::Corrupt { .. }) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        TrailCmd::Export {
            file,
            format,
            channel,
            input,
            output,
        } => {
            if !matches!(format.as_str(), "asciicast" | "fbs") {
                anyhow::bail!("unknown export format {format:?}; supported: asciicast, fbs");
            }
            if format == "fbs" && (channel.is_some() || input) {
                anyhow::bail!(
                    "--channel and --input are for asciicast; fbs exports the VNC channel"
                );
            }
            let mut out: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            if format == "fbs" {
                let x = vnc::export_fbs(&file, &mut out)?;
                out.flush()?;
                if let Some(e) = &x.decode_error {
                    eprintln!("trailgate: note: {e} (the export still holds every recorded byte)");
                }
                if x.later_format_change {
                    eprintln!(
                        "trailgate: warning: the viewer changed its pixel format during the session; \
                         players show what follows the change wrongly"
                    );
                }
                warn_integrity(&x.integrity);
                return Ok(ExitCode::SUCCESS);
            }
            let i = export::asciicast(&file, channel, input, &mut out)?;
            out.flush()?;
            warn_integrity(&i);
            Ok(ExitCode::SUCCESS)
        }
        TrailCmd::Snapshot { file, at, out } => snapshot(&file, at, &out),
        TrailCmd::Play {
            file,
            channel,
            speed,
            idle_limit,
        } => {
            let idle = idle_limit
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let mut out = std::io::stdout().lock();
            let i = export::play(
                &file,
                channel,
                speed,
                idle,
                &mut out,
                &mut std::thread::sleep,
            )?;
            warn_integrity(&i);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn info(file: &Path, json: bool) -> Result<ExitCode> {
    let i = export::info(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(ExitCode::SUCCESS);
    }
    let m = &i.meta;
    println!("session     {}", i.session_id);
    println!("protocol    {}", i.protocol);
    println!("start       {}", i.start_time);
    println!("end         {}", i.end_time.as_deref().unwrap_or("-"));
    println!("duration    {:.3} s", i.duration_seconds);
    println!("end reason  {}", i.end_reason.as_deref().unwrap_or("-"));
    if let Some(c) = &m.client {
        println!("client      {}:{}", c.host, c.port);
    }
    println!(
        "user        {} -> {}@{}",
        m.gateway_user.as_deref().unwrap_or("-"),
        m.target_user.as_deref().unwrap_or("-"),
        m.target_name.as_deref().unwrap_or("-")
    );
    if !m.policies.is_empty() {
        println!("policies    {}", m.policies.join(", "));
    }
    println!(
        "integrity   {}{}",
        i.integrity,
        i.integrity_detail
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    println!("signed by   {}", i.signing_key_fingerprint);
    println!(
        "bytes       {} client->server, {} server->client; {} records; {} on disk",
        i.bytes_client_to_server, i.bytes_server_to_client, i.records, i.file_bytes
    );
    match i.zstd_fast_level {
        Some(fast) => println!(
            "compression zstd {} (frames down to {fast} while the recorder was short of CPU)",
            i.zstd_level
        ),
        None => println!("compression zstd {}", i.zstd_level),
    }
    println!("channels:");
    println!(
        "  {:>4}  {:<28} {:>14} {:>14}  details",
        "id", "type", "c2s bytes", "s2c bytes"
    );
    for c in &i.channels {
        let s = &c.stats;
        let mut details = Vec::new();
        if let Some(x) = &s.command {
            details.push(format!("command={x:?}"));
        }
        if let (Some(o), Some(t)) = (&s.originator, &s.connected) {
            details.push(format!("{}:{} -> {}:{}", o.host, o.port, t.host, t.port));
        }
        if let Some(x) = s.exit_status {
            details.push(format!("exit={x}"));
        }
        if let Some(x) = &s.exit_signal {
            details.push(format!("signal={x}"));
        }
        if s.denied {
            details.push("DENIED".into());
        }
        println!(
            "  {:>4}  {:<28} {:>14} {:>14}  {}",
            c.id,
            c.label,
            s.bytes_client_to_server,
            s.bytes_server_to_client,
            details.join(" ")
        );
    }
    if let Some(v) = &i.vnc {
        print_vnc(v);
    }
    Ok(ExitCode::SUCCESS)
}

fn files(file: &Path, json: bool) -> Result<ExitCode> {
    let t = trailgate_recorder::transfers::index(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>3}  {:>3}  {:<8}  {:<13}  {:>12}  {:<64}  PATH",
        "N", "CH", "DIR", "STATUS", "BYTES", "SHA-256"
    );
    for f in &t.files {
        println!(
            "{:>3}  {:>3}  {:<8}  {:<13}  {:>12}  {:<64}  {}{}",
            f.n,
            f.channel,
            f.direction,
            f.status,
            f.bytes,
            f.sha256.as_deref().unwrap_or(if f.contiguous {
                "-"
            } else {
                "(not contiguous)"
            }),
            f.path,
            f.error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
    for o in &t.operations {
        println!(
            "{:>9.3}s  channel {}  {} {}  {}",
            o.time_s,
            o.channel,
            o.op,
            o.paths.join(" -> "),
            if o.ok {
                "ok".to_string()
            } else {
                o.message.clone()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn commands(file: &Path, json: bool) -> Result<ExitCode> {
    let (cmds, integrity) = trailgate_recorder::commands::commands(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&cmds)?);
    } else {
        println!(
            "{:<27}  {:>10}  {:>3}  {:<5}  COMMAND (~ approximate)",
            "TIME", "OFFSET", "CH", "KIND"
        );
        for c in &cmds {
            // One line per command: control characters (pasted newlines) shown escaped.
            let text: String = c
                .command
                .chars()
                .map(|ch| {
                    if ch.is_control() {
                        ch.escape_default().to_string()
                    } else {
                        ch.to_string()
                    }
                })
                .collect();
            println!(
                "{:<27}  {:>9.3}s  {:>3}  {:<5}  {}{}{}",
                c.time,
                c.offset_s,
                c.channel,
                c.kind,
                if c.approximate { "~ " } else { "" },
                text,
                c.refused
                    .as_deref()
                    .map(|r| format!("  (refused: {r})"))
                    .unwrap_or_default()
            );
        }
    }
    warn_integrity(&integrity);
    Ok(ExitCode::SUCCESS)
}

fn extract(file: &Path, n: usize, out: &Path) -> Result<ExitCode> {
    let tmp = out.with_extension("part");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("{}", tmp.display()))?;
    let entry = trailgate_recorder::transfers::extract(file, n, &mut f)?;
    f.sync_all()?;
    std::fs::rename(&tmp, out)?;
    eprintln!(
        "{}: {} bytes of {} ({}, {}){}",
        out.display(),
        entry.bytes,
        entry.path,
        entry.direction,
        entry.status,
        if entry.contiguous {
            ""
        } else {
            "; not contiguous: parts that never crossed are holes"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn snapshot(file: &Path, at: Option<f64>, out: &Path) -> Result<ExitCode> {
    let at = match at {
        Some(s) => match Duration::try_from_secs_f64(s) {
            Ok(d) => Some(d),
            Err(_) => anyhow::bail!("--at: {s} is not a number of seconds from 0"),
        },
        None => None,
    };
    let f = vnc::frame(file, at)?;
    let png = f.to_png()?;
    std::fs::write(out, &png).with_context(|| format!("writing {}", out.display()))?;
    if let Some(e) = &f.decode_error {
        eprintln!("trailgate: note: {e}; the image shows the screen decoded before it");
    }
    if matches!(f.integrity, Integrity::Corrupt { .. }) {
        warn_integrity(&f.integrity);
    }
    println!(
        "wrote {} ({}x{}, the screen at {:.3} s after {} updates)",
        out.display(),
        f.framebuffer.width(),
        f.framebuffer.height(),
        f.time_us as f64 / 1e6,
        f.updates
    );
    Ok(ExitCode::SUCCESS)
}

/// The VNC part of `info`'s text.
fn print_vnc(v: &vnc::VncInfo) {
    let c = &v.counters;
    println!("vnc (channel {}):", v.channel);
    let size = match (v.width, v.height) {
        (Some(w), Some(h)) => format!("{w}x{h}"),
        _ => "-".into(),
    };
    let pf = |p: &vnc::PixelFormat| {
        format!(
            "{} bpp, depth {}{}",
            p.bits_per_pixel,
            p.depth,
            if p.true_colour { "" } else { ", colour map" }
        )
    };
    println!(
        "  desktop     {:?} {size}{}{}",
        v.desktop_name.as_deref().unwrap_or("-"),
        v.pixel_format
            .as_ref()
            .map(|p| format!(", {}", pf(p)))
            .unwrap_or_default(),
        v.client_pixel_format
            .as_ref()
            .map(|p| format!(" (viewer asked {})", pf(p)))
            .unwrap_or_default()
    );
    println!(
        "  input       {} key events, {} pointer events, {} clipboard texts",
        c.key_events, c.pointer_events, c.client_cut_texts
    );
    println!(
        "  screen      {} updates ({} rectangles) for {} requests; {} bells, {} server clipboard texts",
        c.updates, c.rects, c.update_requests, c.bells, c.cut_texts
    );
    for (name, leg) in [("client leg", &v.client), ("target leg", &v.target)] {
        let Some(leg) = leg else { continue };
        let field = |k: &str| {
            leg.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or("-")
                .to_string()
        };
        let tls = match leg.get("tls_version").and_then(|x| x.as_str()) {
            Some(t) => format!(", {t} {}", field("tls_cipher")),
            None => String::new(),
        };
        println!(
            "  {name:<11} RFB {} {}{tls}",
            field("rfb_version"),
            field("security")
        );
    }
    if let Some(e) = &v.decode_error {
        println!("  decoding    {e}");
    }
}

fn verify(file: &Path, key: Option<&str>) -> Result<ExitCode> {
    let expected = key.map(keys::load_public).transpose()?;
    let v = match trailgate_recorder::verify(file, expected.as_ref()) {
        Ok(v) => v,
        Err(e) => {
            println!("CORRUPT: {}: {e}", file.display());
            return Ok(ExitCode::from(1));
        }
    };
    match v.key_matches {
        Some(false) => {
            println!(
                "CORRUPT: {} was not signed by the given key (trail key {})",
                file.display(),
                v.key_fingerprint
            );
            return Ok(ExitCode::from(1));
        }
        Some(true) => println!(
            "key: {} (matches the given key: origin proven)",
            v.key_fingerprint
        ),
        None => println!(
            "key: {} (recorded in the trail: integrity only; pass --key to prove origin)",
            v.key_fingerprint
        ),
    }
    match &v.integrity {
        Integrity::Sealed => println!(
            "OK: sealed and intact: {} frames, {} records",
            v.frames_verified, v.records_verified
        ),
        Integrity::Incomplete { reason } => println!(
            "INCOMPLETE: intact but not sealed: {} frames / {} records valid{}; {reason}",
            v.frames_verified,
            v.records_verified,
            if v.records_unverified > 0 {
                format!(
                    " (+{} flushed records in an unfinished frame)",
                    v.records_unverified
                )
            } else {
                String::new()
            }
        ),
        Integrity::Corrupt { offset, reason } => println!(
            "CORRUPT: tampered or damaged at offset {offset}: {reason} ({} frames / {} records verified before it)",
            v.frames_verified, v.records_verified
        ),
    }
    Ok(integrity_exit(&v.integrity))
}

pub fn keygen_trail_signing(path: &Path) -> Result<ExitCode> {
    let k = keys::generate(path)?;
    println!(
        "wrote {} and {}",
        path.display(),
        keys::public_key_path(path).display()
    );
    println!("fingerprint {}", keys::fingerprint(&k.verifying_key()));
    Ok(ExitCode::SUCCESS)
}
