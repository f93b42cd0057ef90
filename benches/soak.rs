//! Soak: thousands of `/probe` requests against hostile SMTP servers (silent, drip-feeding,
//! endless continuation lines, a 64 KB greeting, garbage), with slow HTTP clients and an
//! unauthenticated flood alongside, against the release binary. The exporter's resident memory
//! and CPU time are sampled from /proc every half second and printed as a curve: a flat curve
//! is the result. Loopback only; it stops by itself.
//!
//!   cargo bench --bench soak                 # 4,000 probes, 64 at a time
//!   SOAK_PROBES=20000 cargo bench --bench soak

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_smtp-prober");

/// How a hostile server behaves once a probe connects.
#[derive(Copy, Clone, Debug)]
enum Hostile {
    /// Accepts and never says a word.
    Silent,
    /// One byte of a greeting every 100 ms.
    Drip,
    /// `220-` continuation lines, forever.
    Endless,
    /// A 64 KB multiline greeting, then 500 to everything.
    Huge,
    /// Bytes that are not SMTP, with terminal escapes.
    Garbage,
}

fn serve(kind: Hostile) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || act(kind, stream));
        }
    });
    addr
}

fn act(kind: Hostile, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    match kind {
        Hostile::Silent => {
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        }
        Hostile::Drip => {
            for b in b"220 drip.example ESMTP".iter().cycle() {
                if stream.write_all(&[*b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        Hostile::Endless => {
            let line = format!("220-{}\r\n", "e".repeat(1000));
            while stream.write_all(line.as_bytes()).is_ok() {}
        }
        Hostile::Huge => {
            let mut greeting = String::new();
            for _ in 0..127 {
                greeting.push_str(&format!("220-{}\r\n", "h".repeat(500)));
            }
            greeting.push_str("220 huge \x1b[2J\x1b[31mFAKE\r\n");
            if stream.write_all(greeting.as_bytes()).is_err() {
                return;
            }
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                if stream.write_all(b"500 5.5.1 no \x07\r\n").is_err() {
                    return;
                }
            }
        }
        Hostile::Garbage => {
            let _ = stream.write_all(b"\x00\xff\x1b[2J HTTP/1.1 200 OK\r\n\r\n<html>");
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

/// Resident memory (kB) and CPU time (user + system) of a process.
fn sample(pid: u32) -> Option<(u64, Duration)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some((rss, Duration::from_millis(ticks * 10)))
}

fn get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    text.split(' ').nth(1)?.parse().ok()
}

fn main() {
    let probes: usize = std::env::var("SOAK_PROBES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let workers = 64;
    let dir = std::env::temp_dir().join(format!("smtp-prober-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("smtp-prober.yml");
    std::fs::write(
        &config,
        "modules:\n  hostile:\n    timeout: 2s\n    tls: none\n    ehlo: prober.test\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg(format!("--config.file={}", config.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--probe.max-concurrency=96")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting smtp-prober");
    let stderr = child.stderr.take().unwrap();
    let addr: SocketAddr = {
        use std::io::BufRead as _;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let found = loop {
            let line = lines.next().expect("smtp-prober exited").unwrap();
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        thread::spawn(move || for _ in lines.by_ref() {});
        found.parse().unwrap()
    };
    let pid = child.id();
    let servers: Vec<SocketAddr> = [
        Hostile::Silent,
        Hostile::Drip,
        Hostile::Endless,
        Hostile::Huge,
        Hostile::Garbage,
    ]
    .into_iter()
    .map(serve)
    .collect();

    let done = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    // Slow clients and an unauthenticated flood, alongside the probes.
    let side: Vec<_> = (0..2)
        .map(|kind| {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if kind == 0 {
                        let slow: Vec<_> = (0..50)
                            .filter_map(|_| {
                                let mut s = TcpStream::connect(addr).ok()?;
                                s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: a").ok()?;
                                Some(s)
                            })
                            .collect();
                        thread::sleep(Duration::from_secs(3));
                        drop(slow);
                    } else {
                        let _ = get(addr, "/logs?target=\x1b");
                        let _ = get(addr, "/-/healthy");
                    }
                }
            })
        })
        .collect();
    let workers: Vec<_> = (0..workers)
        .map(|w| {
            let done = done.clone();
            let answered = answered.clone();
            let servers = servers.clone();
            thread::spawn(move || loop {
                let n = done.fetch_add(1, Ordering::Relaxed);
                if n >= probes {
                    return;
                }
                let target = servers[(n + w) % servers.len()];
                if get(addr, &format!("/probe?module=hostile&target={target}")).is_some() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    println!("soak: {probes} hostile /probe requests, 64 at a time, against {addr}");
    println!(
        "{:>8} {:>10} {:>10} {:>10}",
        "seconds", "requests", "RSS MB", "CPU s"
    );
    let mut peak = 0u64;
    let mut first = None;
    let mut last = (0u64, Duration::ZERO);
    while !workers.iter().all(|w| w.is_finished()) {
        thread::sleep(Duration::from_millis(500));
        if let Some((rss, cpu)) = sample(pid) {
            first.get_or_insert(rss);
            peak = peak.max(rss);
            last = (rss, cpu);
            println!(
                "{:>8.1} {:>10} {:>10.1} {:>10.2}",
                began.elapsed().as_secs_f64(),
                done.load(Ordering::Relaxed).min(probes),
                rss as f64 / 1024.0,
                cpu.as_secs_f64()
            );
        }
    }
    for w in workers {
        let _ = w.join();
    }
    stop.store(true, Ordering::Relaxed);
    for s in side {
        let _ = s.join();
    }
    let wall = began.elapsed();
    let healthy = get(addr, "/-/healthy");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let answered = answered.load(Ordering::Relaxed);
    println!("result: soak_probes_answered = {answered} of {probes}");
    println!(
        "result: soak_rss_first = {:.1} MB",
        first.unwrap_or(0) as f64 / 1024.0
    );
    println!("result: soak_rss_peak = {:.1} MB", peak as f64 / 1024.0);
    println!("result: soak_rss_end = {:.1} MB", last.0 as f64 / 1024.0);
    println!("result: soak_cpu = {:.1} s", last.1.as_secs_f64());
    println!("result: soak_wall = {:.1} s", wall.as_secs_f64());
    assert_eq!(
        healthy,
        Some(200),
        "the exporter is not healthy after the soak"
    );
}
