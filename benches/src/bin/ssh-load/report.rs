//! The results of a run as one markdown table.

use crate::Args;
use crate::phases::Run;

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn per(kib_delta: i64, n: usize) -> String {
    if n == 0 {
        return "-".into();
    }
    format!("{:.0} KiB", kib_delta as f64 / n as f64)
}

fn lat(l: &crate::phases::Latencies) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} ms ({} keys{})",
        l.pct(0.5),
        l.pct(0.99),
        l.pct(0.999),
        l.us.len(),
        if l.errors > 0 {
            format!(", {} sessions failed", l.errors)
        } else {
            String::new()
        }
    )
}

/// One row's value for one run.
type Cell<'a> = Box<dyn Fn(&Run) -> String + 'a>;

/// The results as a markdown table (stdout).
pub fn table(args: &Args, gw: &Run, direct: Option<&Run>) {
    let col = |f: &dyn Fn(&Run) -> String| {
        let d = direct.map(f).unwrap_or_default();
        format!("| {} | {} |", f(gw), d)
    };
    let typing = args.typing.min(gw.opened);
    println!(
        "\n### {} sessions, {} typing (a key every {} ms on average), {} bulk ({} MiB downloads)\n",
        args.sessions, args.typing, args.key_interval_ms, args.bulk, args.bulk_mib
    );
    println!("| | through the gateway | direct |\n|---|---|---|");
    let rows: Vec<(&str, Cell)> = vec![
        (
            "sessions open (failed)",
            Box::new(|r: &Run| format!("{} ({})", r.opened, r.failed_logins)),
        ),
        (
            "logins per second",
            Box::new(|r: &Run| {
                format!(
                    "{:.0} ({} at a time)",
                    r.opened as f64 / r.login_secs,
                    args.concurrency
                )
            }),
        ),
        (
            "gateway CPU per login",
            Box::new(|r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    format!("{:.2} ms", r.cpu_ms_per_login)
                }
            }),
        ),
        (
            "gateway RSS: before / idle / peak / closed",
            Box::new(|r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    format!(
                        "{} / {} / {} / {}",
                        mib(r.base.rss_kib),
                        mib(r.idle.rss_kib),
                        mib(r.peak_rss_kib),
                        mib(r.closed.rss_kib)
                    )
                }
            }),
        ),
        (
            "gateway RSS per idle session",
            Box::new(|r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    per(r.idle.rss_kib as i64 - r.base.rss_kib as i64, r.opened)
                }
            }),
        ),
        (
            "echo p50 / p99 / p999, typing",
            Box::new(|r: &Run| lat(&r.typing)),
        ),
        (
            "gateway CPU per typing session",
            Box::new(move |r: &Run| {
                if r.direct || typing == 0 {
                    "-".into()
                } else {
                    format!("{:.3}% of a core", r.typing_cores * 100.0 / typing as f64)
                }
            }),
        ),
        (
            "gateway RSS per typing session",
            Box::new(move |r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    per(
                        r.typing_stats.rss_kib as i64 - r.idle.rss_kib as i64,
                        typing,
                    )
                }
            }),
        ),
        (
            "echo p50 / p99 / p999, beside bulk",
            Box::new(|r: &Run| lat(&r.bulk)),
        ),
        (
            "bulk throughput (all bulk sessions)",
            Box::new(|r: &Run| {
                format!(
                    "{:.0} MiB/s, gateway {:.2} cores",
                    r.bulk_mib_s, r.bulk_cores
                )
            }),
        ),
        (
            "gateway fds: before / open / closed",
            Box::new(|r: &Run| {
                if r.direct {
                    "-".into()
                } else {
                    format!("{} / {} / {}", r.base.fds, r.idle.fds, r.closed.fds)
                }
            }),
        ),
        (
            "trails sealed / files / catalog rows",
            Box::new(|r: &Run| match &r.trails {
                Some(t) => format!("{} / {} / {}", t.sealed, t.files, t.catalog_rows),
                None => "-".into(),
            }),
        ),
    ];
    for (name, f) in &rows {
        println!("| {name} |{}", &col(f.as_ref())[1..]);
    }
    if let Some(t) = &gw.trails {
        for b in t.not_sealed.iter().take(10) {
            println!("not sealed: {b}");
        }
    }
}
