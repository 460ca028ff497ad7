//! Load generator: opens idle connections and runaway `SELECT SLEEP(n)`
//! statements as one user, then watches which of them get killed by someone
//! else (mysqk). Used by `make demo` and the benchmarks.
//!
//! ```text
//! cargo run --example storm -- --url mysql://app1:pw@127.0.0.1:3306/db \
//!     [--idle N] [--runaway M] [--sleep-query SECS] [--hold SECS]
//! ```
//!
//! Prints one line per connection (`idle <id>` / `runaway <id>`), then holds
//! everything until all connections were killed or `--hold` seconds passed,
//! and ends with a summary line:
//! `storm: idle=N idle_killed=K runaway=M runaway_killed=R query_killed=Q finished=F`.
//!
//! Idle connections are never touched while held (a ping would reset their
//! `Time` in the processlist); an extra observer connection of the same user
//! reads `information_schema.PROCESSLIST` (a user always sees its own
//! threads) to notice which of them disappeared.

use mysql::prelude::*;
use mysql::{Conn, Opts, OptsBuilder};
use std::collections::BTreeSet;
use std::process::exit;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

struct Args {
    url: String,
    idle: usize,
    runaway: usize,
    sleep_query: u64,
    hold: u64,
}

const USAGE: &str = "usage: storm --url mysql://user:pass@host:port[/db] [--idle N] [--runaway M] \
                     [--sleep-query SECS (600)] [--hold SECS (60)]";

fn parse_args() -> Args {
    let mut args = Args {
        url: String::new(),
        idle: 0,
        runaway: 0,
        sleep_query: 600,
        hold: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            exit(0);
        }
        let Some(value) = it.next() else {
            usage_error(&format!("{flag} needs a value"))
        };
        let num = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage_error(&format!("{flag}: not a number: {v}")))
        };
        match flag.as_str() {
            "--url" => args.url = value,
            "--idle" => args.idle = num(&value) as usize,
            "--runaway" => args.runaway = num(&value) as usize,
            "--sleep-query" => args.sleep_query = num(&value),
            "--hold" => args.hold = num(&value),
            _ => usage_error(&format!("unknown flag {flag}")),
        }
    }
    if args.url.is_empty() {
        usage_error("--url is required");
    }
    args
}

fn usage_error(msg: &str) -> ! {
    eprintln!("storm: {msg}\n{USAGE}");
    exit(2);
}

/// TCP as given in the URL (the mysql crate would otherwise switch a
/// 127.0.0.1 connection to the unix socket), bounded connect time.
fn opts(url: &str, read_timeout: Option<Duration>) -> OptsBuilder {
    let base = Opts::from_url(url).unwrap_or_else(|e| usage_error(&format!("bad --url: {e}")));
    OptsBuilder::from_opts(base)
        .prefer_socket(false)
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
        .read_timeout(read_timeout)
        .write_timeout(Some(Duration::from_secs(30)))
}

/// How a runaway statement ended.
enum Outcome {
    /// The statement ran its full time.
    Finished,
    /// `KILL QUERY`: `SLEEP()` returned 1 (MariaDB) or error 1317.
    QueryKilled,
    /// `KILL <id>`: the connection was closed under it.
    ConnKilled,
    Failed(String),
}

fn run_runaway(mut conn: Conn, secs: u64) -> Outcome {
    match conn.query_first::<i64, _>(format!("SELECT SLEEP({secs})")) {
        Ok(Some(0)) => Outcome::Finished,
        Ok(_) => Outcome::QueryKilled,
        Err(mysql::Error::MySqlError(e)) if e.code == 1317 => Outcome::QueryKilled,
        Err(mysql::Error::MySqlError(e)) if matches!(e.code, 1927 | 2006 | 2013) => {
            Outcome::ConnKilled
        }
        Err(mysql::Error::IoError(_)) | Err(mysql::Error::CodecError(_)) => Outcome::ConnKilled,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn connect(url: &str, read_timeout: Option<Duration>, what: &str) -> Conn {
    Conn::new(opts(url, read_timeout)).unwrap_or_else(|e| {
        eprintln!("storm: cannot open {what} connection: {e}");
        exit(1);
    })
}

fn main() {
    let args = parse_args();

    let idle: Vec<Conn> = (0..args.idle)
        .map(|_| connect(&args.url, None, "idle"))
        .collect();
    let idle_ids: BTreeSet<u64> = idle.iter().map(|c| u64::from(c.connection_id())).collect();
    for id in &idle_ids {
        println!("idle {id}");
    }

    let (done_tx, done_rx) = mpsc::channel::<(u64, Outcome)>();
    for _ in 0..args.runaway {
        // No read timeout: the statement may legitimately run for hours.
        let conn = connect(&args.url, None, "runaway");
        let id = u64::from(conn.connection_id());
        println!("runaway {id}");
        let tx = done_tx.clone();
        let secs = args.sleep_query;
        thread::spawn(move || {
            let outcome = run_runaway(conn, secs);
            let _ = tx.send((id, outcome));
        });
    }
    drop(done_tx);

    let mut observer: Option<Conn> = None;
    let mut idle_gone: BTreeSet<u64> = BTreeSet::new();
    let (mut finished, mut query_killed, mut conn_killed) = (0usize, 0usize, 0usize);
    let mut runaway_left = args.runaway;
    let deadline = Instant::now() + Duration::from_secs(args.hold);

    loop {
        while let Ok((id, outcome)) = done_rx.try_recv() {
            runaway_left -= 1;
            match outcome {
                Outcome::Finished => finished += 1,
                Outcome::QueryKilled => {
                    query_killed += 1;
                    println!("runaway {id} query killed");
                }
                Outcome::ConnKilled => {
                    conn_killed += 1;
                    println!("runaway {id} connection killed");
                }
                Outcome::Failed(e) => println!("runaway {id} failed: {e}"),
            }
        }

        if !idle_ids.is_empty() && idle_gone.len() < idle_ids.len() {
            if observer.is_none() {
                // May fail while the server is full; try again next second.
                observer = Conn::new(opts(&args.url, Some(Duration::from_secs(10)))).ok();
            }
            let listed: Option<Vec<u64>> = observer.as_mut().and_then(|c| {
                c.query("SELECT ID FROM information_schema.PROCESSLIST")
                    .ok()
            });
            match listed {
                Some(ids) => {
                    for id in idle_ids
                        .iter()
                        .filter(|id| !ids.contains(id) && !idle_gone.contains(id))
                    {
                        println!("idle {id} killed");
                    }
                    idle_gone = idle_ids
                        .iter()
                        .copied()
                        .filter(|id| !ids.contains(id))
                        .collect();
                }
                None => observer = None,
            }
        }

        let all_gone = idle_gone.len() == idle_ids.len() && runaway_left == 0;
        if all_gone || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_secs(1));
    }

    drop(idle);
    println!(
        "storm: idle={} idle_killed={} runaway={} runaway_killed={} query_killed={} finished={}",
        idle_ids.len(),
        idle_gone.len(),
        args.runaway,
        conn_killed + query_killed,
        query_killed,
        finished
    );
    // Runaway threads still sleeping end with the process.
    exit(0);
}
