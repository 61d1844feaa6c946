//! A binary packet put back together: its head (a text frame), then as many binary frames as
//! it announced, within a bound on their total size, as socket.io-parser's reconstructor
//! does on the other side.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::client::protocol::{self, BinaryHead, Frame, Packet};

/// The most bytes the attachments of one packet may hold together (tungstenite's bound on one
/// WebSocket message): a packet past it is dropped, with a warning, rather than held.
pub(crate) const MAX_ATTACHMENT_BYTES: usize = 64 << 20;

/// The binary packet being received, if any.
#[derive(Debug, Default)]
pub(crate) struct Assembly {
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    head: BinaryHead,
    got: VecDeque<Bytes>,
    /// Frames still to come.
    left: usize,
    /// Bytes received so far.
    size: usize,
    /// Past the size bound: the frames still to come are let go.
    dropped: bool,
}

impl Assembly {
    /// The packet a frame completes, if any: [`text`](Self::text) or [`binary`](Self::binary).
    pub(crate) fn frame(&mut self, frame: Frame) -> Option<Packet> {
        match frame {
            Frame::Text(text) => self.text(protocol::decode(&text)),
            Frame::Binary(bytes) => self.binary(bytes),
        }
    }

    /// The packet of a text frame, to handle now: a binary head starts an assembly instead (one
    /// without attachments is complete at once). A text frame while attachments are awaited
    /// breaks the protocol (they come straight after their head): the incomplete packet is
    /// dropped, with a warning.
    pub(crate) fn text(&mut self, packet: Packet) -> Option<Packet> {
        if let Some(p) = self.pending.take() {
            tracing::warn!(
                received = p.got.len(),
                announced = p.head.attachments,
                "a binary packet without all its attachments dropped"
            );
        }
        match packet {
            Packet::Binary(head) if head.attachments == 0 => Some(head.complete(&VecDeque::new())),
            Packet::Binary(head) => {
                self.pending = Some(Pending {
                    left: head.attachments,
                    head,
                    got: VecDeque::new(),
                    size: 0,
                    dropped: false,
                });
                None
            }
            other => Some(other),
        }
    }

    /// A binary frame: the next attachment; the packet once it has them all.
    pub(crate) fn binary(&mut self, bytes: Bytes) -> Option<Packet> {
        let Some(p) = self.pending.as_mut() else {
            tracing::debug!(
                len = bytes.len(),
                "a binary frame outside any packet ignored"
            );
            return None;
        };
        p.left -= 1;
        p.size = p.size.saturating_add(bytes.len());
        if !p.dropped && p.size > MAX_ATTACHMENT_BYTES {
            tracing::warn!(
                limit = MAX_ATTACHMENT_BYTES,
                "a binary packet larger than the limit dropped"
            );
            p.dropped = true;
            p.got.clear();
        }
        if !p.dropped {
            p.got.push_back(bytes);
        }
        if p.left > 0 {
            return None;
        }
        let p = self.pending.take()?;
        (!p.dropped).then(|| p.head.complete(&p.got))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Arg;
    use crate::client::protocol::decode;

    fn head(text: &str) -> Packet {
        let packet = decode(text);
        assert!(matches!(packet, Packet::Binary(_)), "{packet:?}");
        packet
    }

    #[test]
    fn a_packet_is_complete_with_its_last_attachment() {
        let mut a = Assembly::default();
        let two = r#"452-["f",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(a.text(head(two)), None);
        assert_eq!(a.binary(Bytes::from_static(b"a")), None);
        let Some(Packet::Event { args, .. }) = a.binary(Bytes::from_static(b"b")) else {
            panic!()
        };
        assert_eq!(args[1], Arg::Binary(Bytes::from_static(b"b")));
        // Then nothing is pending: a stray frame is let go.
        assert_eq!(a.binary(Bytes::from_static(b"c")), None);
        // No attachments at all: complete at once.
        assert!(matches!(
            a.text(head(r#"450-["e",1]"#)),
            Some(Packet::Event { .. })
        ));
    }

    #[test]
    fn a_text_frame_before_the_attachments_drops_the_packet_and_is_handled() {
        let mut a = Assembly::default();
        assert_eq!(
            a.text(head(r#"451-["f",{"_placeholder":true,"num":0}]"#)),
            None
        );
        assert_eq!(a.text(Packet::Ping), Some(Packet::Ping));
        assert_eq!(a.binary(Bytes::from_static(b"late")), None);
    }

    #[test]
    fn attachments_past_the_size_bound_drop_the_packet_and_only_it() {
        let mut a = Assembly::default();
        let three = r#"453-["f",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#;
        a.text(head(three));
        let half = Bytes::from(vec![0u8; MAX_ATTACHMENT_BYTES / 2 + 1]);
        assert_eq!(a.binary(half.clone()), None);
        assert_eq!(a.binary(half), None);
        assert_eq!(a.binary(Bytes::from_static(b"last")), None, "dropped");
        let one = r#"451-["g",{"_placeholder":true,"num":0}]"#;
        a.text(head(one));
        assert!(matches!(
            a.binary(Bytes::from_static(b"ok")),
            Some(Packet::Event { name, .. }) if name == "g"
        ));
    }
}
