//! Helpers shared by the scenarios: running `manifold serve`, peak RSS, CPU time, percentiles.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound and released; the server binds it right after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Start `manifold serve --config <config>` (killed when the handle drops) and wait until
/// `/readyz` answers.
pub async fn spawn_manifold(
    manifold: &Path,
    config: &Path,
    port: u16,
) -> anyhow::Result<tokio::process::Child> {
    let mut child = tokio::process::Command::new(manifold)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {}: {e} (build it with cargo build --release -p manifold -p manifold-bench --no-default-features)",
                manifold.display()
            )
        })?;
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "manifold serve exited with {status} (config {})",
                config.display()
            );
        }
        if client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("manifold serve did not become ready on port {port} within 20 s")
}

/// Peak resident set (`VmHWM`) of a process, in KiB (0 if unknown).
pub fn rss_peak_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// User + system CPU seconds used so far by a process (`/proc/<pid>/stat`, 100 ticks/s).
pub fn cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // fields after the parenthesised command name: state is field 3, utime 14, stime 15
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// Percentile `p` (0..1) of `v` (sorted in place); NaN when empty.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}
