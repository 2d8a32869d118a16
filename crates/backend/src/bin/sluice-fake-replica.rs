//! A stand-in replica for tests and manual trials: speaks the readiness protocol and answers
//! every TCP connection with one line naming its generation, slot and pid.
//!
//! Options, in any order:
//! - `--print-env NAME` (repeatable): print `NAME=<value or <unset>>` on stdout first;
//! - `--stdout-lines N`: print `line 1` .. `line N` on stdout before the readiness line;
//! - `--fail CODE MESSAGE`: print MESSAGE on stderr and exit with CODE (a model that cannot load);
//! - `--gate ADDR`: before reporting ready, connect to ADDR, say `waiting <generation> <slot>`
//!   and wait for one byte (lets a test decide when the replica becomes ready).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "<unset>".into());
    let generation = var("SLUICE_GENERATION");
    let slot = var("SLUICE_REPLICA_INDEX");
    let mut gate = None;
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
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = writeln!(conn, "generation {generation} slot {slot} pid {pid}");
        let _ = conn.shutdown(std::net::Shutdown::Write);
    }
    ExitCode::SUCCESS
}
