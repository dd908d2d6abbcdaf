//! Text frames on their way to the client. A large frame (the `authenticated` event of a world
//! with many rooms) goes out as WebSocket fragments of at most [`FRAGMENT_BYTES`], one per
//! event-loop turn, so each is flushed to the socket before the next is written.
//!
//! Why: actix-http copies what a connection sends into a per-connection write buffer that
//! starts at 8 KiB and keeps, for the connection's life, whatever size it once grew to (up to
//! 128 KiB). One 15 KB frame would leave every idle session holding a 16 KiB buffer it never
//! needs again; in fragments the buffer never grows. Frames sent while a fragmented message is
//! under way wait behind it, because data frames must not interleave with its fragments
//! (control frames such as heartbeat pings may, and do).
//!
//! Pure state machine, so the ordering rules are unit-tested without a socket.

use std::collections::VecDeque;

use bytes::Bytes;

/// Largest fragment, and largest frame sent whole: half the HTTP layer's initial write
/// buffer, leaving room for small frames written in the same turn.
pub const FRAGMENT_BYTES: usize = 4096;

/// What the session writes to the socket now.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// A whole text frame.
    Text(String),
    /// The first fragment of a text message; more follow on later turns.
    First(Bytes),
    /// A middle fragment; more follow on later turns.
    Continue(Bytes),
    /// The final fragment.
    Last(Bytes),
}

impl Write {
    /// Whether the session must come back on a later turn for the next fragment.
    pub fn more_follows(&self) -> bool {
        matches!(self, Write::First(_) | Write::Continue(_))
    }
}

/// The session's outgoing text frames.
#[derive(Debug)]
pub struct Outbox {
    fragment_bytes: usize,
    /// The unsent rest of the message being fragmented.
    sending: Option<Bytes>,
    /// Frames waiting for that message to finish.
    queued: VecDeque<String>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::with_fragment_bytes(FRAGMENT_BYTES)
    }
}

impl Outbox {
    /// An outbox splitting frames longer than `fragment_bytes` (at least 4).
    pub fn with_fragment_bytes(fragment_bytes: usize) -> Self {
        Outbox {
            fragment_bytes: fragment_bytes.max(4),
            sending: None,
            queued: VecDeque::new(),
        }
    }

    /// A fragmented message is under way.
    pub fn busy(&self) -> bool {
        self.sending.is_some()
    }

    /// Sends `frame`: what to write now, or `None` when it waits behind a fragmented message.
    pub fn send(&mut self, frame: String) -> Option<Write> {
        if self.busy() {
            self.queued.push_back(frame);
            return None;
        }
        Some(self.start(frame))
    }

    /// The next turn of a fragmented message: its next fragment, and when that was the last
    /// one, the frames that waited (up to and including the start of the next large one).
    pub fn next_turn(&mut self) -> Vec<Write> {
        let Some(mut rest) = self.sending.take() else {
            return Vec::new();
        };
        let cut = self.cut(&rest);
        if cut < rest.len() {
            let head = rest.split_to(cut);
            self.sending = Some(rest);
            return vec![Write::Continue(head)];
        }
        let mut out = vec![Write::Last(rest)];
        while let Some(frame) = self.queued.pop_front() {
            let w = self.start(frame);
            let more = w.more_follows();
            out.push(w);
            if more {
                break;
            }
        }
        out
    }

    fn start(&mut self, frame: String) -> Write {
        if frame.len() <= self.fragment_bytes {
            return Write::Text(frame);
        }
        let mut rest = Bytes::from(frame);
        let head = rest.split_to(self.cut(&rest));
        self.sending = Some(rest);
        Write::First(head)
    }

    /// Where the next fragment of `rest` ends: at most `fragment_bytes`, moved back to a
    /// character boundary so that every fragment is valid UTF-8 on its own (strict clients
    /// check each one).
    fn cut(&self, rest: &[u8]) -> usize {
        if rest.len() <= self.fragment_bytes {
            return rest.len();
        }
        let mut cut = self.fragment_bytes;
        // A UTF-8 continuation byte is 0b10xx_xxxx; at most 3 of them follow a lead byte.
        while cut > 0 && rest.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
            cut -= 1;
        }
        if cut == 0 {
            self.fragment_bytes
        } else {
            cut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the outbox like the session: writes, and a turn whenever more follows.
    fn drain(o: &mut Outbox, first: Option<Write>) -> Vec<Write> {
        let mut out: Vec<Write> = first.into_iter().collect();
        while o.busy() {
            out.extend(o.next_turn());
        }
        out
    }

    /// Puts the written frames back together as the client sees them.
    fn messages(writes: &[Write]) -> Vec<String> {
        let mut done = Vec::new();
        let mut partial: Option<Vec<u8>> = None;
        for w in writes {
            match w {
                Write::Text(t) => {
                    assert!(partial.is_none(), "a frame inside a fragmented message");
                    done.push(t.clone());
                }
                Write::First(b) => {
                    assert!(partial.is_none());
                    assert!(std::str::from_utf8(b).is_ok());
                    partial = Some(b.to_vec());
                }
                Write::Continue(b) | Write::Last(b) => {
                    assert!(
                        std::str::from_utf8(b).is_ok(),
                        "fragment splits a character"
                    );
                    let p = partial.as_mut().expect("a fragment without a first");
                    p.extend_from_slice(b);
                    if matches!(w, Write::Last(_)) {
                        done.push(String::from_utf8(partial.take().unwrap()).unwrap());
                    }
                }
            }
        }
        assert!(partial.is_none(), "an unfinished message");
        done
    }

    #[test]
    fn small_frames_go_out_whole() {
        let mut o = Outbox::with_fragment_bytes(8);
        assert_eq!(
            o.send("12345678".into()),
            Some(Write::Text("12345678".into()))
        );
        assert!(!o.busy());
    }

    #[test]
    fn large_frames_are_fragmented_and_later_frames_wait() {
        let mut o = Outbox::with_fragment_bytes(4);
        let first = o.send("abcdefghij".into());
        assert_eq!(first, Some(Write::First(Bytes::from_static(b"abcd"))));
        assert_eq!(o.send("x".into()), None, "waits behind the message");
        assert_eq!(o.send("klmnopq".into()), None);
        assert_eq!(o.send("y".into()), None);
        assert_eq!(
            o.next_turn(),
            vec![Write::Continue(Bytes::from_static(b"efgh"))]
        );
        assert_eq!(
            o.next_turn(),
            vec![
                Write::Last(Bytes::from_static(b"ij")),
                Write::Text("x".into()),
                Write::First(Bytes::from_static(b"klmn")),
            ]
        );
        assert_eq!(
            o.next_turn(),
            vec![
                Write::Last(Bytes::from_static(b"opq")),
                Write::Text("y".into())
            ]
        );
        assert!(!o.busy());
        assert!(o.next_turn().is_empty());
    }

    #[test]
    fn fragments_end_on_character_boundaries() {
        let mut o = Outbox::with_fragment_bytes(5);
        let text = "aü€😀bü€😀c".to_string();
        let first = o.send(text.clone());
        assert_eq!(messages(&drain(&mut o, first)), vec![text]);
    }

    proptest::proptest! {
        #[test]
        fn every_frame_arrives_whole_and_in_order(
            frames in proptest::collection::vec(".{0,40}", 1..12),
            size in 4usize..16,
        ) {
            let mut o = Outbox::with_fragment_bytes(size);
            let mut writes = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                writes.extend(o.send(f.clone()));
                // Turns happen between some sends, as the event loop interleaves them.
                if i % 3 == 0 {
                    writes.extend(o.next_turn());
                }
            }
            while o.busy() {
                writes.extend(o.next_turn());
            }
            for w in &writes {
                let len = match w {
                    Write::Text(t) => t.len(),
                    Write::First(b) | Write::Continue(b) | Write::Last(b) => b.len(),
                };
                proptest::prop_assert!(len <= size, "{len} > {size}");
            }
            proptest::prop_assert_eq!(messages(&writes), frames);
        }
    }
}
