//! Length-prefixed framing for TCP, sans-IO.
//!
//! A frame is a 4-byte big-endian length followed by that many payload bytes. The
//! [`Framer`] walks the chunks a stream delivers — arbitrary cuts of the byte stream —
//! and says, step by step, where each frame is:
//!
//! - wholly inside the current chunk: the reactor leases those bytes in place, no copy;
//! - straddling chunks: the reactor copies the pieces into an assembly buffer.
//!
//! [`Framer::next`] only looks; [`Framer::commit`] moves on. The split lets the reactor
//! stop in the middle of a chunk when it has no assembly buffer, and resume later at the
//! same place with nothing lost or consumed twice.

/// What the next bytes of a chunk are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// No bytes left in the chunk.
    Empty,
    /// `used` bytes of a length prefix (the prefix is not complete yet, or the frame's
    /// body starts in a later chunk).
    HeaderPart {
        /// Bytes consumed.
        used: usize,
    },
    /// A whole frame: its payload is `len` bytes after `skip` prefix bytes.
    Whole {
        /// Prefix bytes before the payload.
        skip: usize,
        /// Payload length.
        len: usize,
    },
    /// A frame of `len` payload bytes starts: its first `take` bytes are after `skip`
    /// prefix bytes, the rest comes in later chunks. Needs an assembly buffer.
    Begin {
        /// Prefix bytes before the payload.
        skip: usize,
        /// Total payload length.
        len: usize,
        /// Payload bytes in this chunk.
        take: usize,
    },
    /// `take` more payload bytes of the frame being assembled; `done` when complete.
    Append {
        /// Bytes consumed.
        take: usize,
        /// Whether the frame is now complete.
        done: bool,
    },
    /// The prefix announces a frame larger than the SAP accepts: a protocol error.
    TooLarge {
        /// The announced length.
        len: usize,
    },
}

impl Step {
    /// Bytes of the chunk this step consumes.
    pub(crate) fn used(&self) -> usize {
        match *self {
            Step::Empty | Step::TooLarge { .. } => 0,
            Step::HeaderPart { used } => used,
            Step::Whole { skip, len } => skip + len,
            Step::Begin { skip, take, .. } => skip + take,
            Step::Append { take, .. } => take,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// `n` bytes of a length prefix seen, kept in `got`.
    Header { got: [u8; 4], n: usize },
    /// A frame of `len` bytes, `filled` of them copied to the assembly buffer.
    Body { len: usize, filled: usize },
}

/// The framing state of one stream (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Framer {
    state: State,
    max: usize,
}

impl Framer {
    /// A framer at a frame boundary, refusing frames over `max` payload bytes.
    pub(crate) fn new(max: usize) -> Framer {
        Framer {
            state: State::Header { got: [0; 4], n: 0 },
            max,
        }
    }

    /// What `rest`, the unconsumed part of the current chunk, starts with.
    pub(crate) fn next(&self, rest: &[u8]) -> Step {
        if rest.is_empty() {
            return Step::Empty;
        }
        match self.state {
            State::Header { got, n } => {
                let need = 4 - n;
                if rest.len() < need {
                    return Step::HeaderPart { used: rest.len() };
                }
                let mut b = got;
                b[n..].copy_from_slice(&rest[..need]);
                let len = u32::from_be_bytes(b) as usize;
                if len > self.max {
                    return Step::TooLarge { len };
                }
                let avail = rest.len() - need;
                if len <= avail {
                    Step::Whole { skip: need, len }
                } else if avail == 0 {
                    Step::HeaderPart { used: need }
                } else {
                    Step::Begin {
                        skip: need,
                        len,
                        take: avail,
                    }
                }
            }
            State::Body { len, filled: 0 } => {
                if rest.len() >= len {
                    Step::Whole { skip: 0, len }
                } else {
                    Step::Begin {
                        skip: 0,
                        len,
                        take: rest.len(),
                    }
                }
            }
            State::Body { len, filled } => {
                let take = (len - filled).min(rest.len());
                Step::Append {
                    take,
                    done: filled + take == len,
                }
            }
        }
    }

    /// Moves past `step`, which [`Framer::next`] returned for the same `rest`.
    pub(crate) fn commit(&mut self, step: Step, rest: &[u8]) {
        self.state = match (self.state, step) {
            (State::Header { mut got, n }, Step::HeaderPart { used }) => {
                let end = (n + used).min(4);
                got[n..end].copy_from_slice(&rest[..end - n]);
                if end == 4 {
                    State::Body {
                        len: u32::from_be_bytes(got) as usize,
                        filled: 0,
                    }
                } else {
                    State::Header { got, n: end }
                }
            }
            (_, Step::Whole { .. }) => State::Header { got: [0; 4], n: 0 },
            (_, Step::Begin { len, take, .. }) => State::Body { len, filled: take },
            (State::Body { len, filled }, Step::Append { take, done }) => {
                if done {
                    State::Header { got: [0; 4], n: 0 }
                } else {
                    State::Body {
                        len,
                        filled: filled + take,
                    }
                }
            }
            (s, _) => s,
        };
    }
}

/// Writes the 4-byte prefix of a `len`-byte frame.
pub(crate) fn prefix(len: usize) -> [u8; 4] {
    (len as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reassembles frames from chunks the way the reactor does, with a Vec for the
    /// assembly buffer; returns the frames and how many were copied (not in place).
    fn run(chunks: &[Vec<u8>], max: usize) -> Result<(Vec<Vec<u8>>, usize), usize> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        let mut asm: Vec<u8> = Vec::new();
        let mut copied = 0;
        for chunk in chunks {
            let mut pos = 0;
            loop {
                let rest = &chunk[pos..];
                let step = f.next(rest);
                match step {
                    Step::Empty => break,
                    Step::TooLarge { len } => return Err(len),
                    Step::HeaderPart { .. } => {}
                    Step::Whole { skip, len } => out.push(rest[skip..skip + len].to_vec()),
                    Step::Begin { skip, take, .. } => {
                        asm.clear();
                        asm.extend_from_slice(&rest[skip..skip + take]);
                    }
                    Step::Append { take, done } => {
                        asm.extend_from_slice(&rest[..take]);
                        if done {
                            out.push(std::mem::take(&mut asm));
                            copied += 1;
                        }
                    }
                }
                f.commit(step, rest);
                pos += step.used();
            }
        }
        Ok((out, copied))
    }

    fn stream(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut s = Vec::new();
        for f in frames {
            s.extend_from_slice(&prefix(f.len()));
            s.extend_from_slice(f);
        }
        s
    }

    #[test]
    fn frames_in_one_chunk_are_found_in_place() {
        let frames = vec![b"ab".to_vec(), vec![], b"xyz".to_vec()];
        let (got, copied) = run(&[stream(&frames)], 100).unwrap();
        assert_eq!(got, frames);
        assert_eq!(copied, 0);
    }

    #[test]
    fn a_frame_cut_inside_its_prefix_and_body_is_reassembled() {
        let frames = vec![b"hello world".to_vec()];
        let s = stream(&frames);
        let chunks = vec![s[..2].to_vec(), s[2..7].to_vec(), s[7..].to_vec()];
        let (got, copied) = run(&chunks, 100).unwrap();
        assert_eq!(got, frames);
        assert_eq!(copied, 1);
    }

    #[test]
    fn an_oversized_frame_is_refused() {
        assert_eq!(run(&[stream(&[vec![0; 10]])], 9), Err(10));
    }

    #[test]
    fn next_does_not_move_until_commit() {
        let s = stream(&[b"abcdef".to_vec()]);
        let f = Framer::new(100);
        assert_eq!(f.next(&s[..6]), f.next(&s[..6]));
        assert_eq!(
            f.next(&s[..6]),
            Step::Begin {
                skip: 4,
                len: 6,
                take: 2
            }
        );
    }

    proptest! {
        #[test]
        fn any_cut_of_any_stream_gives_back_the_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
            cuts in proptest::collection::vec(1usize..17, 0..60),
        ) {
            let s = stream(&frames);
            let mut chunks = Vec::new();
            let mut pos = 0;
            for c in cuts {
                if pos >= s.len() { break; }
                let end = (pos + c).min(s.len());
                chunks.push(s[pos..end].to_vec());
                pos = end;
            }
            if pos < s.len() { chunks.push(s[pos..].to_vec()); }
            let (got, _) = run(&chunks, 64).unwrap();
            prop_assert_eq!(got, frames);
        }
    }
}
