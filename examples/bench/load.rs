//! Load on the server (idle connections opened in parallel) and waiting
//! for it to take effect or to go away.

use crate::server::{Server, ADMIN};
use mysql::prelude::*;
use mysql::Conn;
use std::fs;
use std::process::exit;
use std::thread;
use std::time::{Duration, Instant};

/// Open socket descriptors of this process.
pub fn socket_fds() -> std::collections::HashSet<i32> {
    fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the server has closed every socket in `fds` (the client side
/// sees the FIN the moment KILL shuts a connection down). Watching our own
/// client sockets costs the server nothing, where polling
/// `information_schema.PROCESSLIST` costs it ~8 ms per poll with 2000
/// threads and would slow down whichever tool is being measured.
/// Returns how many are still open at `deadline`.
pub fn wait_closed(fds: &[i32], deadline: Instant) -> usize {
    let mut open: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLRDHUP,
            revents: 0,
        })
        .collect();
    while !open.is_empty() && Instant::now() < deadline {
        // SAFETY: `open` is a valid, exclusively borrowed array of pollfd.
        unsafe {
            libc::poll(open.as_mut_ptr(), open.len() as libc::nfds_t, 50);
        }
        open.retain(|p| p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) == 0);
        for p in open.iter_mut() {
            p.revents = 0;
        }
    }
    open.len()
}

/// `n` idle connections of `user`, opened by 4 threads (the server accepts
/// faster than one client connects). Returns them with their ids.
pub fn open_idle(srv: &Server, user: (&str, &str), n: usize) -> (Vec<Conn>, u64, u64) {
    let threads = 4.min(n.max(1));
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let count = per.min(n.saturating_sub(t * per));
            let opts = srv.opts(user.0, user.1);
            thread::spawn(move || {
                (0..count)
                    .map(|i| {
                        Conn::new(opts.clone()).unwrap_or_else(|e| {
                            eprintln!("bench: idle connection {i}: {e}");
                            exit(1)
                        })
                    })
                    .collect::<Vec<Conn>>()
            })
        })
        .collect();
    let conns: Vec<Conn> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("opener thread"))
        .collect();
    let ids = conns.iter().map(|c| u64::from(c.connection_id()));
    let lo = ids.clone().min().unwrap_or(0);
    let hi = ids.max().unwrap_or(0);
    (conns, lo, hi)
}

pub fn count(c: &mut Conn, sql: &str) -> u64 {
    c.query_first::<u64, _>(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or(0)
}

pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        if Instant::now() > end {
            eprintln!("bench: timed out after {limit:?} waiting for {what}");
            exit(1);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the processlist holds only the bench's own admin connections:
/// the previous run's tool and victims are gone.
pub fn wait_quiet(admin: &mut Conn) {
    wait_for("the server to be quiet", Duration::from_secs(60), || {
        count(
            admin,
            &format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER NOT IN ('{}', 'system user', 'event_scheduler')",
                ADMIN.0
            ),
        ) == 0
    });
}

pub fn wait_quiet_except(admin: &mut Conn, also: &str) {
    wait_for("the server to be quiet", Duration::from_secs(60), || {
        count(
            admin,
            &format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER NOT IN ('{}', '{also}', 'system user', 'event_scheduler')",
                ADMIN.0
            ),
        ) == 0
    });
}
