//! Bringing a held connection back in step after a command timed out on a
//! socket the server never closed (the server stalled, or a query ran longer
//! than `read_timeout`).
//!
//! The `mysql` crate returns the timeout but keeps the socket and does not
//! mark the connection broken; the late reply arrives once the server wakes
//! and would be read as the answer to the *next* command. Re-logging in is
//! what must be avoided (during a `Too many connections` storm it fails), so
//! instead the session is re-synchronised on the raw socket, beside the driver:
//!
//! 1. right after the failure, a marker query `SELECT '<nonce>' AS r` is
//!    written to the socket as a raw `COM_QUERY` packet; the server answers
//!    commands in order, so its reply comes after every late one;
//! 2. whatever arrives is read without blocking and cut into packets (only
//!    the 4-byte framing is parsed, not the replies' meaning), discarding
//!    everything up to the marker's row and the one terminator packet after it;
//! 3. the session is then checked through the driver (`SELECT CONNECTION_ID()`
//!    must return its own id) before it is used again.
//!
//! A reply the driver had half read when it timed out leaves bytes the
//! framing cannot follow: the marker is then not found, or the check fails,
//! and the session is given up like a closed one.

use std::os::fd::RawFd;
use std::time::Instant;

/// What the raw socket says about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    /// Open, nothing to read.
    Quiet,
    /// Open, bytes waiting (a late reply, or something unexpected).
    Readable,
    /// The server closed it (or the network reset it).
    Closed,
}

/// Look at `fd` without blocking and without consuming anything.
pub fn socket_state(fd: RawFd) -> SocketState {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, timeout 0.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    if n < 0 {
        return SocketState::Closed;
    }
    if n == 0 {
        return SocketState::Quiet;
    }
    if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP | libc::POLLNVAL) != 0 {
        return SocketState::Closed;
    }
    let mut b = [0u8; 1];
    // SAFETY: a 1-byte buffer; MSG_PEEK leaves the byte for whoever reads next.
    let r = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match r {
        0 => SocketState::Closed,
        r if r > 0 => SocketState::Readable,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => SocketState::Quiet,
            _ => SocketState::Closed,
        },
    }
}

/// The raw `COM_QUERY` packet of the marker query, and the payload of the
/// row packet its reply carries.
pub fn marker(nonce: &str) -> (Vec<u8>, Vec<u8>) {
    let sql = format!("SELECT '{nonce}' AS r");
    let len = sql.len() + 1;
    let mut packet = Vec::with_capacity(4 + len);
    packet.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    packet.push(0); // sequence id of a new command
    packet.push(0x03); // COM_QUERY
    packet.extend_from_slice(sql.as_bytes());
    // A text-protocol row of one short string: length byte, then the bytes.
    let mut row = Vec::with_capacity(1 + nonce.len());
    row.push(nonce.len() as u8);
    row.extend_from_slice(nonce.as_bytes());
    (packet, row)
}

/// Where a resync stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Still waiting for (the rest of) the marker's reply.
    Waiting,
    /// The marker's reply was read whole: the stream is at a command boundary.
    InStep,
    /// The bytes cannot be followed; the session must be given up.
    Lost(String),
}

/// One connection being brought back in step.
#[derive(Debug)]
pub struct Resync {
    /// When the failure happened (for the log: how long the server was away).
    pub since: Instant,
    /// Why the session fell out of step, for the status file.
    pub reason: String,
    row: Vec<u8>,
    buf: Vec<u8>,
    seen_row: bool,
    /// Bytes discarded so far (the late replies).
    pub discarded: usize,
}

/// Late replies bigger than this are not followed (a snapshot of a huge
/// processlist is a few MB at most): the session is given up instead.
const MAX_DISCARD: usize = 64 << 20;

impl Resync {
    /// Start a resync on `fd`: write the marker. `Err` when the socket
    /// does not take it (then the connection is gone).
    pub fn start(fd: RawFd, nonce: &str, reason: String) -> Result<Resync, String> {
        let (packet, row) = marker(nonce);
        // SAFETY: a valid buffer of packet.len() bytes; MSG_NOSIGNAL: a
        // closed socket is an error, not a SIGPIPE.
        let n = unsafe {
            libc::send(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n != packet.len() as isize {
            return Err(format!(
                "cannot write to the socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Resync {
            since: Instant::now(),
            reason,
            row,
            buf: Vec::new(),
            seen_row: false,
            discarded: 0,
        })
    }

    /// Read what has arrived (never blocks) and follow the packets.
    pub fn advance(&mut self, fd: RawFd) -> Progress {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            // SAFETY: a valid buffer of chunk.len() bytes.
            let n = unsafe {
                libc::recv(
                    fd,
                    chunk.as_mut_ptr().cast(),
                    chunk.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n == 0 {
                return Progress::Lost("closed by the server".into());
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::WouldBlock => break,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => return Progress::Lost(format!("socket error: {e}")),
                }
            }
            self.buf.extend_from_slice(&chunk[..n as usize]);
            let p = self.follow();
            if p != Progress::Waiting {
                return p;
            }
        }
        self.follow()
    }

    /// Consume whole packets from `buf`.
    fn follow(&mut self) -> Progress {
        let mut pos = 0;
        let result = loop {
            let Some((payload, next)) = frame(&self.buf[pos..]) else {
                break Progress::Waiting;
            };
            if self.seen_row {
                // The marker's result set ends with one EOF/OK packet (0xfe).
                break if payload.first() == Some(&0xfe) && next == self.buf.len() - pos {
                    Progress::InStep
                } else {
                    Progress::Lost("unexpected bytes after the resync marker".into())
                };
            }
            if payload == self.row.as_slice() {
                self.seen_row = true;
            } else {
                self.discarded += next;
            }
            pos += next;
        };
        self.buf.drain(..pos);
        if self.discarded > MAX_DISCARD {
            return Progress::Lost("late reply too large to follow".into());
        }
        result
    }
}

/// The payload of the first whole packet in `b` and the offset after it.
pub fn frame(b: &[u8]) -> Option<(&[u8], usize)> {
    if b.len() < 4 {
        return None;
    }
    let len = usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16;
    let end = 4 + len;
    (b.len() >= end).then(|| (&b[4..end], end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        p
    }

    fn resync(nonce: &str) -> Resync {
        let (_, row) = marker(nonce);
        Resync {
            since: Instant::now(),
            reason: String::new(),
            row,
            buf: Vec::new(),
            seen_row: false,
            discarded: 0,
        }
    }

    #[test]
    fn marker_packet_is_a_com_query() {
        let (p, row) = marker("mysqk-abc");
        let (payload, end) = frame(&p).unwrap();
        assert_eq!(end, p.len());
        assert_eq!(p[3], 0);
        assert_eq!(payload[0], 0x03);
        assert_eq!(&payload[1..], b"SELECT 'mysqk-abc' AS r");
        assert_eq!(row, b"\x09mysqk-abc");
    }

    #[test]
    fn late_replies_are_skipped_up_to_the_marker() {
        let mut r = resync("mysqk-n1");
        // A late OK (a ping), then a late result set, then the marker's reply.
        let mut bytes = packet(1, &[0, 0, 0, 2, 0, 0, 0]);
        bytes.extend(packet(1, &[1]));
        bytes.extend(packet(2, b"\x03def\x00\x00\x00\x01r\x00"));
        bytes.extend(packet(3, b"\x08mysqk-n0")); // another nonce: not ours
        bytes.extend(packet(4, &[0xfe, 0, 0, 2, 0]));
        bytes.extend(packet(1, &[1]));
        bytes.extend(packet(2, b"\x03def\x00\x00\x00\x01r\x00"));
        bytes.extend(packet(3, b"\x08mysqk-n1"));
        let tail = packet(4, &[0xfe, 0, 0, 2, 0]);
        // Arriving in pieces, split inside a header and inside a payload.
        for piece in bytes.chunks(5) {
            r.buf.extend_from_slice(piece);
            assert_eq!(r.follow(), Progress::Waiting);
        }
        r.buf.extend_from_slice(&tail[..2]);
        assert_eq!(r.follow(), Progress::Waiting);
        r.buf.extend_from_slice(&tail[2..]);
        assert_eq!(r.follow(), Progress::InStep);
        assert!(r.discarded > 0);
    }

    #[test]
    fn bytes_after_the_marker_mean_lost() {
        let mut r = resync("mysqk-n2");
        r.buf.extend(packet(3, b"\x08mysqk-n2"));
        r.buf.extend(packet(4, &[0xfe, 0, 0, 2, 0]));
        r.buf.extend(packet(1, &[0]));
        assert!(matches!(r.follow(), Progress::Lost(_)));
        let mut r = resync("mysqk-n3");
        r.buf.extend(packet(3, b"\x08mysqk-n3"));
        r.buf.extend(packet(4, &[0x00, 0, 0, 2, 0]));
        assert!(matches!(r.follow(), Progress::Lost(_)));
    }
}
