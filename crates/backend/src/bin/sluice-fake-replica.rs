//! A stand-in replica for tests and manual trials: speaks the readiness protocol and answers
//! every TCP connection with one line naming its generation, slot and pid.
//!
//! Options, in any order:
//! - `--print-env NAME` (repeatable): print `NAME=<value or <unset>>` on stdout first;
//! - `--stdout-lines N`: print `line 1` .. `line N` on stdout before the readiness line;
//! - `--fail CODE MESSAGE`: print MESSAGE on stderr and exit with CODE (a model that cannot load);
//! - `--gate ADDR`: before reporting ready, connect to ADDR, say `waiting <generation> <slot>`
//!   and wait for one byte (lets a test decide when the replica becomes ready);
//! - `--http-health FILE`: speak HTTP/1.1 instead, as real replicas do: every request gets the
//!   health FILE dictates, read afresh each time: missing, empty or `ok` → 200 `Healthy`; a
//!   status code such as `503` → that status; `hang` → no answer while the file says so (lets
//!   a test make a probe fail, time out, and recover). `%i` in FILE stands for the slot.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "<unset>".into());
    let generation = var("SLUICE_GENERATION");
    let slot = var("SLUICE_REPLICA_INDEX");
    let mut gate = None;
    let mut http_health: Option<PathBuf> = None;
    let mut i = 0;
    while i < args.len() {
        let value = |k: usize| args.get(i + k).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--print-env" => {
                println!("{}={}", value(1), var(&value(1)));
                i += 2;
            }
            "--stdout-lines" => {
                for n in 1..=value(1).parse::<u32>().unwrap_or(0) {
                    println!("line {n}");
                }
                i += 2;
            }
            "--fail" => {
                eprintln!("loading model");
                eprintln!("{}", value(2));
                return ExitCode::from(value(1).parse::<u8>().unwrap_or(1));
            }
            "--gate" => {
                gate = Some(value(1));
                i += 2;
            }
            "--http-health" => {
                http_health = Some(value(1).replace("%i", &slot).into());
                i += 2;
            }
            other => {
                eprintln!("unknown option {other}");
                return ExitCode::from(2);
            }
        }
    }
    eprintln!("loading model");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    if let Some(gate) = gate {
        let mut conn = TcpStream::connect(gate).expect("connect to gate");
        writeln!(conn, "waiting {generation} {slot}").expect("write to gate");
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte).expect("read from gate");
    }
    println!("SLUICE_REPLICA_LISTENING {addr}");
    eprintln!("listening on {addr}");
    let pid = std::process::id();
    if let Some(health) = http_health {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let health = health.clone();
            std::thread::spawn(move || answer_http(conn, &health, pid));
        }
        return ExitCode::SUCCESS;
    }
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = writeln!(conn, "generation {generation} slot {slot} pid {pid}");
        let _ = conn.shutdown(std::net::Shutdown::Write);
    }
    ExitCode::SUCCESS
}

/// Reads one request's head, then answers as the health file says.
fn answer_http(conn: TcpStream, health: &Path, pid: u32) {
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let state = || std::fs::read_to_string(health).unwrap_or_default().trim().to_owned();
    while state() == "hang" {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, body) = match state().as_str() {
        "" | "ok" => (200, format!("Healthy (pid {pid})")),
        other => (other.parse::<u16>().unwrap_or(500), format!("unhealthy: {other}")),
    };
    let answer = format!(
        "HTTP/1.1 {code} Whatever\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut conn = &conn;
    let _ = conn.write_all(answer.as_bytes());
    let _ = conn.shutdown(std::net::Shutdown::Write);
}
