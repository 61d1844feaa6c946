//! The protocol's first PING, one ping interval after the open packet, on a WebSocket.
//!
//! Engine.IO's reference server sends its first PING one `pingInterval` after the session
//! opens. engineioxide sends it at once, right after the open packet, so a client reading the
//! WebSocket sees `0{...}`, `2`, then its namespace's CONNECT: not the order the protocol's
//! own test suite (and any client written to its letter) expects.
//!
//! Without forking the engine, the stack hides that first PING on a session opened over
//! WebSocket (an upgraded one sent its first PING over long-polling already): the connection
//! wrapper ([`Severable`](crate::transport)) drops the PING frame on its way out and hands the
//! engine the client's PONG frame on its way in, so the engine counts the client alive and
//! sends its next PING one interval later, as the reference server sends its first. The engine
//! still closes a client that does not answer that PING within the ping timeout, so the session
//! is checked from then on as before; only the check of the first instant is skipped, where
//! the connection has just proven itself by opening.
//!
//! The wrapper follows the frames both ways (headers only; payloads are skipped), drops only
//! a text frame whose whole payload is `2` and that is one of the first [`WATCHED_FRAMES`]
//! frames sent, and puts the PONG between two frames of the client, never inside one. What
//! it cannot tell (a frame header split across writes at the very place of the PING) it lets
//! through as it is: the client then sees the early PING, as without this module.

/// engineioxide's PING as it writes it: a final text frame of one byte, `2`, unmasked.
const PING_FRAME: [u8; 3] = [0x81, 0x01, b'2'];

/// The client's PONG: a final text frame of one byte, `3`, masked (a client's frames must be)
/// with the key 0, which leaves the payload as it is.
const PONG_FRAME: [u8; 7] = [0x81, 0x81, 0, 0, 0, 0, b'3'];

/// The first PING is looked for among this many frames from the server: it comes second.
pub(crate) const WATCHED_FRAMES: u32 = 8;

/// Where one direction of a WebSocket connection is in its frames.
#[derive(Clone, Copy, Default)]
struct Frames {
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
}

impl Frames {
    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.remaining == 0
    }

    /// Reads `data` up to the end of the current frame; returns how many bytes that took
    /// (all of `data` when the frame goes on past it).
    fn feed_one(&mut self, data: &[u8]) -> usize {
        let mut i = 0;
        while i < data.len() {
            if self.remaining > 0 {
                let skip = self.remaining.min((data.len() - i) as u64);
                self.remaining -= skip;
                i += skip as usize;
                if self.remaining == 0 {
                    return i;
                }
                continue;
            }
            self.header[self.header_len] = data[i];
            self.header_len += 1;
            i += 1;
            if let Some(len) = self.payload_len() {
                self.header_len = 0;
                self.remaining = len;
                if len == 0 {
                    return i;
                }
            }
        }
        i
    }

    /// Reads all of `data`; returns how many frames ended in it.
    fn feed(&mut self, mut data: &[u8]) -> u32 {
        let mut ended = 0;
        while !data.is_empty() {
            let n = self.feed_one(data);
            if self.at_boundary() {
                ended += 1;
            }
            data = &data[n..];
        }
        ended
    }

    /// The payload length, once the header is complete.
    fn payload_len(&self) -> Option<u64> {
        let h = &self.header[..self.header_len];
        if h.len() < 2 {
            return None;
        }
        let ext = match h[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
        if h.len() < 2 + ext + mask {
            return None;
        }
        Some(match ext {
            0 => u64::from(h[1] & 0x7f),
            _ => h[2..2 + ext]
                .iter()
                .fold(0, |acc, b| (acc << 8) | u64::from(*b)),
        })
    }

    /// How many bytes may be read without going past the end of the current frame (one at a
    /// time while its header is incomplete).
    fn readable_in_frame(&self) -> u64 {
        if self.remaining > 0 {
            self.remaining
        } else {
            1
        }
    }
}

enum State {
    /// Looking for the first PING among the server's first frames.
    Watching {
        frames_sent: u32,
    },
    /// The PING was dropped: the PONG goes to the engine, from this byte on, at the next
    /// boundary between the client's frames.
    Answering {
        at: usize,
    },
    Done,
}

/// The first-PING state of one WebSocket connection (see the module docs).
pub(crate) struct FirstPing {
    state: State,
    sent: Frames,
    received: Frames,
}

/// What to do with the bytes the engine writes.
pub(crate) enum WriteStep {
    /// Write at most this many of them.
    Write(usize),
    /// They start with the first PING: take its bytes as written, without writing them.
    Drop(usize),
}

/// What to do for a read of the engine.
pub(crate) enum ReadStep {
    /// Read from the client as usual.
    Read,
    /// Read at most this many bytes from the client.
    ReadAtMost(usize),
    /// Give the engine these bytes of the PONG.
    Answer(&'static [u8]),
}

impl FirstPing {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Watching { frames_sent: 0 },
            sent: Frames::default(),
            received: Frames::default(),
        }
    }

    /// Whether there is nothing left to do.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Before a write of `buf`.
    pub(crate) fn before_write(&mut self, buf: &[u8]) -> WriteStep {
        let State::Watching { .. } = self.state else {
            return WriteStep::Write(buf.len());
        };
        if self.sent.at_boundary() {
            if buf.starts_with(&PING_FRAME) {
                self.state = State::Answering { at: 0 };
                return WriteStep::Drop(PING_FRAME.len());
            }
            if buf.len() < PING_FRAME.len() && PING_FRAME.starts_with(buf) {
                // Cannot tell yet; let it go as it is.
                self.state = State::Done;
                return WriteStep::Write(buf.len());
            }
        }
        // Up to the end of the current frame, so that the next write starts on a boundary.
        let mut peek = self.sent;
        WriteStep::Write(peek.feed_one(buf))
    }

    /// After `written` bytes of a write went out.
    pub(crate) fn after_write(&mut self, written: &[u8]) {
        if let State::Watching { frames_sent } = &mut self.state {
            *frames_sent += self.sent.feed(written);
            if *frames_sent >= WATCHED_FRAMES && self.sent.at_boundary() {
                self.state = State::Done;
            }
        }
    }

    /// Before a read of the engine.
    pub(crate) fn before_read(&self) -> ReadStep {
        match self.state {
            State::Answering { at } if self.received.at_boundary() => {
                ReadStep::Answer(&PONG_FRAME[at..])
            }
            State::Answering { .. } => {
                ReadStep::ReadAtMost(self.received.readable_in_frame().min(1 << 16) as usize)
            }
            _ => ReadStep::Read,
        }
    }

    /// After `n` bytes of the PONG were handed to the engine.
    pub(crate) fn answered(&mut self, n: usize) {
        if let State::Answering { at } = &mut self.state {
            *at += n;
            if *at >= PONG_FRAME.len() {
                self.state = State::Done;
            }
        }
    }

    /// After the client's bytes `read` were handed to the engine.
    pub(crate) fn after_read(&mut self, read: &[u8]) {
        if !self.is_done() {
            self.received.feed(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_frame(payload: &[u8], masked: bool) -> Vec<u8> {
        let mut f = vec![0x81];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend([0; 4]);
        }
        f.extend(payload);
        f
    }

    /// Writes `out` as the engine would, in writes of at most `chunk` bytes; returns what
    /// reached the client.
    fn write_all(fp: &mut FirstPing, out: &[u8], chunk: usize) -> Vec<u8> {
        let mut sent = Vec::new();
        let mut rest = out;
        while !rest.is_empty() {
            let offer = &rest[..rest.len().min(chunk)];
            match fp.before_write(offer) {
                WriteStep::Drop(n) => rest = &rest[n..],
                WriteStep::Write(n) => {
                    sent.extend(&offer[..n]);
                    fp.after_write(&offer[..n]);
                    rest = &rest[n..];
                }
            }
        }
        sent
    }

    #[test]
    fn the_first_ping_is_dropped_and_later_ones_are_not() {
        let open = text_frame(br#"0{"sid":"x","upgrades":[]}"#, false);
        let connect = text_frame(br#"40{"sid":"y"}"#, false);
        for chunk in [1, 2, 3, 5, 1000] {
            let mut fp = FirstPing::new();
            let mut out = open.clone();
            out.extend(PING_FRAME);
            out.extend(&connect);
            out.extend(PING_FRAME);
            let sent = write_all(&mut fp, &out, chunk);
            let mut want = open.clone();
            want.extend(&connect);
            if chunk >= PING_FRAME.len() {
                want.extend(PING_FRAME);
                assert_eq!(sent, want, "writes of {chunk}");
                assert!(matches!(fp.state, State::Answering { at: 0 }));
            } else {
                // A PING split across writes cannot be told: it goes as it is.
                assert_eq!(sent, out, "writes of {chunk}");
                assert!(fp.is_done());
            }
        }
    }

    #[test]
    fn a_ping_inside_a_payload_or_after_the_watched_frames_is_left_alone() {
        let mut fp = FirstPing::new();
        let looks_like_ping = text_frame(&[0x81, 0x01, b'2', b'x'], false);
        assert_eq!(write_all(&mut fp, &looks_like_ping, 1000), looks_like_ping);
        let mut many = Vec::new();
        for _ in 0..WATCHED_FRAMES {
            many.extend(text_frame(b"4x", false));
        }
        many.extend(PING_FRAME);
        let mut fp = FirstPing::new();
        assert_eq!(write_all(&mut fp, &many, 1000), many);
        assert!(fp.is_done());
    }

    #[test]
    fn the_pong_goes_between_two_frames_of_the_client_never_inside_one() {
        let mut fp = FirstPing::new();
        fp.state = State::Answering { at: 0 };
        let big = text_frame(&[b'x'; 300], true);
        // Mid-header: one byte at a time.
        fp.after_read(&big[..1]);
        assert!(matches!(fp.before_read(), ReadStep::ReadAtMost(1)));
        fp.after_read(&big[1..4]);
        // In the payload: up to its end.
        fp.after_read(&big[4..10]);
        match fp.before_read() {
            ReadStep::ReadAtMost(n) => assert_eq!(n, big.len() - 10),
            _ => panic!("must read the rest of the frame first"),
        }
        fp.after_read(&big[10..]);
        let ReadStep::Answer(pong) = fp.before_read() else {
            panic!("at a boundary: the pong");
        };
        assert_eq!(pong, PONG_FRAME);
        fp.answered(3);
        let ReadStep::Answer(rest) = fp.before_read() else {
            panic!("the rest of the pong");
        };
        assert_eq!(rest, &PONG_FRAME[3..]);
        fp.answered(rest.len());
        assert!(fp.is_done());
        assert!(matches!(fp.before_read(), ReadStep::Read));
    }

    #[test]
    fn frame_lengths_of_every_size_are_followed() {
        for len in [0, 1, 125, 126, 65535, 65536] {
            let mut frames = Frames::default();
            let f = text_frame(&vec![b'a'; len], true);
            assert_eq!(frames.feed(&f), 1, "{len}");
            assert!(frames.at_boundary());
        }
    }
}
