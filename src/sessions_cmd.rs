//! `trailgate sessions list|show|kill|download`: a thin client of the control API, so operators
//! need no curl. The API's URL and token come from flags or the environment
//! (`TRAILGATE_URL`, default `http://127.0.0.1:8022`; `TRAILGATE_TOKEN`; `TRAILGATE_CA` for
//! HTTPS with a private CA).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use trailgate_control_api::routes::urlencode;

#[derive(Debug, Args)]
pub struct Api {
    /// The control API's base URL.
    #[arg(long, env = "TRAILGATE_URL", default_value = "http://127.0.0.1:8022")]
    url: String,
    /// An API token (admin to kill).
    #[arg(long, env = "TRAILGATE_TOKEN", hide_env_values = true)]
    token: String,
    /// CA certificates (PEM) the API's HTTPS certificate must chain to.
    #[arg(long, env = "TRAILGATE_CA")]
    ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// List sessions, newest first.
    List {
        #[command(flatten)]
        api: Api,
        /// Only active (true) or ended (false) sessions.
        #[arg(long)]
        active: Option<bool>,
        /// Gateway user.
        #[arg(long)]
        user: Option<String>,
        /// Target name.
        #[arg(long)]
        target: Option<String>,
        /// Verdict (accept, deny, gw-auth-fail, ...).
        #[arg(long)]
        verdict: Option<String>,
        /// Sessions that transferred a file whose path contains this.
        #[arg(long)]
        file: Option<String>,
        /// Sessions with an exec command containing this.
        #[arg(long)]
        command: Option<String>,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One session's record.
    Show {
        #[command(flatten)]
        api: Api,
        /// The session id.
        id: String,
        /// Print the API's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Terminate a session (admin token).
    Kill {
        #[command(flatten)]
        api: Api,
        /// The session id.
        id: String,
        /// Shown to the user and recorded as the end reason.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Download a session's trail (audited like every download).
    Download {
        #[command(flatten)]
        api: Api,
        /// The session id.
        id: String,
        /// `raw` (the trail file), `asciicast` or `fbs`.
        #[arg(long, default_value = "raw")]
        format: String,
        /// Where to write it (default: ID.trail, ID.cast or ID.fbs).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn agent(api: &Api) -> Result<ureq::Agent> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = ureq::tls::TlsConfig::builder().unversioned_rustls_crypto_provider(provider);
    if let Some(ca) = &api.ca {
        let pem = std::fs::read(ca).with_context(|| format!("--ca {}", ca.display()))?;
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            bail!("--ca {}: no certificate in the file", ca.display());
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    Ok(ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .build()
        .new_agent())
}

/// The API's answer as JSON, or its error message.
fn check(mut resp: ureq::http::Response<ureq::Body>) -> Result<ureq::http::Response<ureq::Body>> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    let msg = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or(body);
    bail!("the API answered {status}: {msg}")
}

fn get_json(api: &Api, path: &str) -> Result<Value> {
    let url = format!("{}{path}", api.url.trim_end_matches('/'));
    let resp = agent(api)?
        .get(&url)
        .header("Authorization", &format!("Bearer {}", api.token))
        .call()
        .with_context(|| format!("GET {url}"))?;
    Ok(check(resp)?.body_mut().read_json()?)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("-")
}

pub fn run(cmd: SessionsCmd) -> Result<ExitCode> {
    match cmd {
        SessionsCmd::List {
            api,
            active,
            user,
            target,
            verdict,
            file,
            command,
            limit,
            json,
        } => {
            let mut q = vec![format!("limit={limit}")];
            if let Some(a) = active {
                q.push(format!("active={a}"));
            }
            for (k, v) in [
                ("user", user),
                ("target", target),
                ("verdict", verdict),
                ("file", file),
                ("command", command),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", urlencode(&v)));
                }
            }
            let v = get_json(&api, &format!("/api/v1/sessions?{}", q.join("&")))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<36}  {:<20}  {:<4}  {:<12}  {:<12}  {:<14}  {:>9}  STATUS",
                "ID", "START", "PROT", "USER", "TARGET", "VERDICT", "DURATION"
            )?;
            for r in v["items"].as_array().into_iter().flatten() {
                let dur = r["duration"]
                    .as_f64()
                    .map_or("active".into(), |d| format!("{d:.1}s"));
                writeln!(
                    out,
                    "{:<36}  {:<20}  {:<4}  {:<12}  {:<12}  {:<14}  {:>9}  {}",
                    s(r, "id"),
                    s(r, "start_time").get(..19).unwrap_or("-"),
                    s(r, "protocol"),
                    r["user"]["name"].as_str().unwrap_or("-"),
                    r["target"]["name"].as_str().unwrap_or("-"),
                    s(r, "verdict"),
                    dur,
                    s(r, "status"),
                )?;
            }
            writeln!(
                out,
                "{} of {} sessions",
                v["items"].as_array().map_or(0, Vec::len),
                v["meta"]["total"]
            )?;
            Ok(ExitCode::SUCCESS)
        }
        SessionsCmd::Show { api, id, json } => {
            let r = get_json(&api, &format!("/api/v1/sessions/{}", urlencode(&id)))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("session:  {}", s(&r, "id"));
            println!("protocol: {}", s(&r, "protocol"));
            println!(
                "user:     {} -> {} ({})",
                r["user"]["name"].as_str().unwrap_or("-"),
                r["target"]["name"].as_str().unwrap_or("-"),
                r["user"]["server_username"].as_str().unwrap_or("-")
            );
            println!(
                "client:   {}:{}",
                r["client"]["ip"].as_str().unwrap_or("-"),
                r["client"]["port"]
            );
            println!("start:    {}", s(&r, "start_time"));
            println!("end:      {}", r["end_time"].as_str().unwrap_or("(active)"));
            println!(
                "verdict:  {}  status: {}",
                s(&r, "verdict"),
                s(&r, "status")
            );
            if let Some(e) = r["end_reason"].as_str() {
                println!(
                    "reason:   {e} ({})",
                    r["end_reason_code"].as_str().unwrap_or("-")
                );
            }
            if let Some(by) = r["terminated_by"].as_str() {
                println!("ended by: {by}");
            }
            if let Some(t) = r["last_activity"].as_str() {
                println!("last input: {t}");
            }
            if r["files"].as_u64().is_some_and(|n| n > 0) {
                println!(
                    "files:    {} (trailgate trail files, or .../files)",
                    r["files"]
                );
            }
            println!(
                "bytes:    {} to the target, {} to the client",
                r["bytes_client_to_server"], r["bytes_server_to_client"]
            );
            println!(
                "trail:    {}",
                r["trail"]["integrity"].as_str().unwrap_or("-")
            );
            for c in r["channels"].as_array().into_iter().flatten() {
                println!(
                    "channel {}: {} {}",
                    c["id"],
                    s(c, "type"),
                    c["command"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionsCmd::Kill { api, id, reason } => {
            let url = format!(
                "{}/api/v1/sessions/{}/kill",
                api.url.trim_end_matches('/'),
                urlencode(&id)
            );
            let body = serde_json::json!({ "reason": reason });
            let resp = agent(&api)?
                .post(&url)
                .header("Authorization", &format!("Bearer {}", api.token))
                .send_json(&body)
                .with_context(|| format!("POST {url}"))?;
            let r: Value = check(resp)?.body_mut().read_json()?;
            println!(
                "terminated {}: {}",
                s(&r, "id"),
                r["end_reason"].as_str().unwrap_or("-")
            );
            Ok(ExitCode::SUCCESS)
        }
        SessionsCmd::Download {
            api,
            id,
            format,
            out,
        } => {
            let ext = match format.as_str() {
                "raw" => "trail",
                "asciicast" => "cast",
                "fbs" => "fbs",
                other => bail!("--format {other}: use raw, asciicast or fbs"),
            };
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{id}.{ext}")));
            let url = format!(
                "{}/api/v1/sessions/{}/trail?format={format}",
                api.url.trim_end_matches('/'),
                urlencode(&id)
            );
            let resp = agent(&api)?
                .get(&url)
                .header("Authorization", &format!("Bearer {}", api.token))
                .call()
                .with_context(|| format!("GET {url}"))?;
            let mut resp = check(resp)?;
            let tmp = out.with_extension(format!("{ext}.part"));
            let mut f =
                std::fs::File::create(&tmp).with_context(|| format!("{}", tmp.display()))?;
            let n = std::io::copy(&mut resp.body_mut().as_reader(), &mut f)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &out)?;
            println!("{} ({n} bytes)", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
