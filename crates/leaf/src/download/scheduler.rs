//! Which piece each source fetches next.
//!
//! Pull-based: every source has a few request slots; a free slot asks [`Scheduler::next`] for
//! work. Fast sources free their slots sooner and so take more pieces; a slow source only
//! holds the pieces in its slots, and loses a piece it takes far longer with than the other
//! sources take with theirs ([`Scheduler::reclaim`]; when is decided in `download/pace.rs`):
//! the piece goes back to the pool for the others and that source is not given it again.
//! When no piece is missing any more (the *endgame*), a free slot duplicates an in-flight
//! piece held by another source, so a slow or stalled source cannot hold back the end of the
//! download; the first verified copy wins and the losers are cancelled (see
//! [`Scheduler::is_done`]). Duplicates are capped per piece, but only requests by *proven*
//! sources (those that delivered a verified piece) count: sources that never delivered
//! cannot fill a piece's duplicates and so lock out one that does.
//!
//! Invariants:
//! * a piece is `Missing`, `Active(n)` with `n` ≥ 1 requests in flight, or `Done`;
//! * `n` equals the number of sources whose `inflight` set holds that piece;
//! * `proven_holders[p]` equals the number of proven sources whose `inflight` set holds `p`
//!   (whatever `p`'s state), and an endgame duplicate of `p` is handed out only while it is
//!   below [`MAX_DUPLICATES`];
//! * `remaining` = number of pieces not `Done`; the download is finished iff it is 0;
//! * a `Done` piece is never requested again and its bit in [`Scheduler::bitfield`] is set;
//! * a piece in a source's `lost` set (reclaimed from it) is never handed to that source
//!   again; while some `Missing` piece is not in its `lost` set it gets that piece, and while
//!   every `Missing` piece is, it waits (no endgame duplicate while pieces are missing).

use std::collections::HashSet;

/// Most requests by proven sources for one piece at once (endgame duplication).
pub const MAX_DUPLICATES: u16 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceState {
    Missing,
    Active(u16),
    Done,
}

/// What a free slot should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Fetch this piece.
    Piece(u32),
    /// Nothing to do now; ask again later.
    Wait,
    /// Every piece is done.
    Finished,
}

/// Piece bookkeeping for one download.
#[derive(Debug)]
pub struct Scheduler {
    pieces: Vec<PieceState>,
    remaining: usize,
    /// Lowest index that may still be `Missing`.
    cursor: usize,
    inflight: Vec<HashSet<u32>>,
    /// Per source: pieces reclaimed from it for being slow, never handed to it again.
    lost: Vec<HashSet<u32>>,
    /// Per source: it delivered a verified piece.
    proven: Vec<bool>,
    /// Per piece: proven sources fetching it.
    proven_holders: Vec<u16>,
}

impl Scheduler {
    /// A scheduler for `count` pieces, those in `done` already verified on disk.
    pub fn new(count: usize, done: &[bool]) -> Self {
        let pieces: Vec<PieceState> = (0..count)
            .map(|i| {
                if done.get(i).copied().unwrap_or(false) {
                    PieceState::Done
                } else {
                    PieceState::Missing
                }
            })
            .collect();
        let remaining = pieces.iter().filter(|p| **p != PieceState::Done).count();
        Scheduler {
            pieces,
            remaining,
            cursor: 0,
            inflight: Vec::new(),
            lost: Vec::new(),
            proven: Vec::new(),
            proven_holders: vec![0; count],
        }
    }

    /// Registers a source; returns its index.
    pub fn add_source(&mut self) -> usize {
        self.inflight.push(HashSet::new());
        self.lost.push(HashSet::new());
        self.proven.push(false);
        self.inflight.len() - 1
    }

    /// Pieces not yet verified.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Work for a free slot of `source`.
    pub fn next(&mut self, source: usize) -> Next {
        if self.remaining == 0 {
            return Next::Finished;
        }
        while self.cursor < self.pieces.len() && self.pieces[self.cursor] != PieceState::Missing {
            self.cursor += 1;
        }
        if self.cursor < self.pieces.len() {
            let lost = &self.lost[source];
            // Only a source that lost pieces scans past the cursor (at most once per piece).
            let piece = if lost.is_empty() {
                Some(self.cursor)
            } else {
                (self.cursor..self.pieces.len())
                    .find(|&i| self.pieces[i] == PieceState::Missing && !lost.contains(&(i as u32)))
            };
            return match piece {
                Some(piece) => {
                    self.start(source, piece as u32);
                    Next::Piece(piece as u32)
                }
                None => Next::Wait,
            };
        }
        // Endgame: duplicate the least-requested in-flight piece this source is not fetching
        // (nor lost) and that has room for another proven request.
        let held = &self.inflight[source];
        let lost = &self.lost[source];
        let candidate = self
            .pieces
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                PieceState::Active(n)
                    if self.proven_holders[i] < MAX_DUPLICATES
                        && !held.contains(&(i as u32))
                        && !lost.contains(&(i as u32)) =>
                {
                    Some((self.proven_holders[i], *n, i as u32))
                }
                _ => None,
            })
            .min();
        match candidate {
            Some((_, _, piece)) => {
                self.start(source, piece);
                Next::Piece(piece)
            }
            None => Next::Wait,
        }
    }

    fn start(&mut self, source: usize, piece: u32) {
        let state = &mut self.pieces[piece as usize];
        *state = match *state {
            PieceState::Active(n) => PieceState::Active(n + 1),
            _ => PieceState::Active(1),
        };
        self.inflight[source].insert(piece);
        if self.proven[source] {
            self.proven_holders[piece as usize] += 1;
        }
    }

    /// `source` no longer fetches `piece` (it held it): the proven count follows.
    fn unhold(&mut self, source: usize, piece: u32) -> bool {
        if !self.inflight[source].remove(&piece) {
            return false;
        }
        if self.proven[source] {
            let holders = &mut self.proven_holders[piece as usize];
            *holders = holders.saturating_sub(1);
        }
        true
    }

    /// `source` delivered a verified `piece`. Returns false if another source was first.
    pub fn complete(&mut self, source: usize, piece: u32) -> bool {
        self.unhold(source, piece);
        if !self.proven[source] {
            self.proven[source] = true;
            for &held in &self.inflight[source] {
                self.proven_holders[held as usize] += 1;
            }
        }
        let state = &mut self.pieces[piece as usize];
        if *state == PieceState::Done {
            return false;
        }
        *state = PieceState::Done;
        self.remaining -= 1;
        true
    }

    /// `source` will not deliver `piece` (error, bad data, cancelled): it goes back to the pool
    /// unless another source is still fetching it or it is done.
    pub fn release(&mut self, source: usize, piece: u32) {
        if !self.unhold(source, piece) {
            return;
        }
        let state = &mut self.pieces[piece as usize];
        *state = match *state {
            PieceState::Active(n) if n > 1 => PieceState::Active(n - 1),
            PieceState::Active(_) => {
                self.cursor = self.cursor.min(piece as usize);
                PieceState::Missing
            }
            other => other,
        };
    }

    /// `source` was too slow with `piece`: released (see [`Scheduler::release`]) and never
    /// handed to `source` again.
    pub fn reclaim(&mut self, source: usize, piece: u32) {
        if self.inflight[source].contains(&piece) {
            self.release(source, piece);
            self.lost[source].insert(piece);
        }
    }

    /// Releases everything `source` holds (it disconnected or was dropped).
    pub fn drop_source(&mut self, source: usize) {
        let held: Vec<u32> = self.inflight[source].iter().copied().collect();
        for piece in held {
            self.release(source, piece);
        }
    }

    /// Whether `piece` is verified (a duplicate request for it can be cancelled).
    pub fn is_done(&self, piece: u32) -> bool {
        self.pieces.get(piece as usize) == Some(&PieceState::Done)
    }

    /// One bit per piece, set when done (least significant bit first).
    pub fn bitfield(&self) -> Vec<u8> {
        let mut bits = vec![0u8; self.pieces.len().div_ceil(8)];
        for (i, p) in self.pieces.iter().enumerate() {
            if *p == PieceState::Done {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_spread_then_endgame_duplicates() {
        let mut s = Scheduler::new(3, &[]);
        let a = s.add_source();
        let b = s.add_source();
        assert_eq!(s.next(a), Next::Piece(0));
        assert_eq!(s.next(b), Next::Piece(1));
        assert_eq!(s.next(a), Next::Piece(2));
        // Endgame: b duplicates a piece a holds, never one it holds itself.
        assert_eq!(s.next(b), Next::Piece(0));
        assert_eq!(s.next(b), Next::Piece(2));
        assert_eq!(s.next(b), Next::Wait);
        assert!(s.complete(b, 0));
        assert!(s.is_done(0));
        assert!(!s.complete(a, 0), "the loser's copy is not counted");
        s.complete(b, 1);
        s.complete(a, 2);
        assert_eq!(s.next(a), Next::Finished);
        assert_eq!(s.bitfield(), vec![0b111]);
    }

    #[test]
    fn a_dropped_source_returns_its_pieces() {
        let mut s = Scheduler::new(4, &[true, false, false, false]);
        assert_eq!(s.remaining(), 3);
        let a = s.add_source();
        let b = s.add_source();
        assert_eq!(s.next(a), Next::Piece(1));
        assert_eq!(s.next(a), Next::Piece(2));
        s.drop_source(a);
        assert_eq!(s.next(b), Next::Piece(1));
        assert_eq!(s.next(b), Next::Piece(2));
        assert_eq!(s.next(b), Next::Piece(3));
        s.release(b, 3);
        assert_eq!(s.next(b), Next::Piece(3));
    }

    #[test]
    fn a_reclaimed_piece_goes_to_another_source() {
        let mut s = Scheduler::new(3, &[]);
        let slow = s.add_source();
        let fast = s.add_source();
        assert_eq!(s.next(slow), Next::Piece(0));
        assert_eq!(s.next(fast), Next::Piece(1));
        s.reclaim(slow, 0);
        // The slow source skips the piece it lost; the fast one gets it.
        assert_eq!(s.next(slow), Next::Piece(2));
        assert_eq!(s.next(fast), Next::Piece(0));
        assert!(s.complete(fast, 0));
        s.reclaim(slow, 2);
        // Only a piece it lost is missing: it waits rather than duplicate.
        assert_eq!(s.next(slow), Next::Wait);
        assert_eq!(s.next(fast), Next::Piece(2));
        // Endgame: it may duplicate piece 1, never piece 2.
        assert_eq!(s.next(slow), Next::Piece(1));
        assert_eq!(s.next(slow), Next::Wait);
        s.complete(fast, 1);
        s.complete(fast, 2);
        assert!(!s.complete(slow, 1));
        assert_eq!(s.next(slow), Next::Finished);
        // Reclaiming a piece the source does not hold changes nothing.
        s.reclaim(slow, 1);
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn duplicates_by_proven_sources_are_bounded() {
        let mut s = Scheduler::new(4, &[]);
        let sources: Vec<_> = (0..4).map(|_| s.add_source()).collect();
        // Sources 0, 1 and 2 prove themselves; 3 never delivers.
        for (i, &source) in sources[..3].iter().enumerate() {
            assert_eq!(s.next(source), Next::Piece(i as u32));
            assert!(s.complete(source, i as u32));
        }
        assert_eq!(s.next(sources[3]), Next::Piece(3));
        assert_eq!(s.next(sources[0]), Next::Piece(3));
        assert_eq!(s.next(sources[1]), Next::Piece(3));
        assert_eq!(
            s.next(sources[2]),
            Next::Wait,
            "two proven requests at most"
        );
        s.release(sources[1], 3);
        assert_eq!(s.next(sources[2]), Next::Piece(3));
    }

    #[test]
    fn unproven_sources_cannot_lock_a_proven_one_out() {
        let mut s = Scheduler::new(2, &[]);
        let live = s.add_source();
        let stallers: Vec<_> = (0..4).map(|_| s.add_source()).collect();
        assert_eq!(s.next(live), Next::Piece(0));
        // Stallers take the other piece and pile onto both.
        for &staller in &stallers {
            assert!(matches!(s.next(staller), Next::Piece(_)));
        }
        assert!(s.complete(live, 0));
        // Piece 1 has unproven requests only: the proven source may still duplicate it.
        assert_eq!(s.next(live), Next::Piece(1));
        assert!(s.complete(live, 1));
        assert_eq!(s.next(live), Next::Finished);
        // The losers' copies do not count, and releasing them keeps the books straight.
        for &staller in &stallers {
            s.drop_source(staller);
        }
        assert_eq!(s.proven_holders, vec![0, 0]);
    }

    /// Checks the invariants of the module doc against a recount.
    fn check(s: &Scheduler) {
        for (i, state) in s.pieces.iter().enumerate() {
            let piece = i as u32;
            let holders = s.inflight.iter().filter(|f| f.contains(&piece)).count() as u16;
            let proven = (0..s.inflight.len())
                .filter(|&src| s.proven[src] && s.inflight[src].contains(&piece))
                .count() as u16;
            assert_eq!(s.proven_holders[i], proven, "piece {i}");
            match state {
                PieceState::Missing => assert_eq!(holders, 0, "piece {i}"),
                PieceState::Active(n) => assert_eq!(*n, holders, "piece {i}"),
                PieceState::Done => {}
            }
        }
        let not_done = s.pieces.iter().filter(|p| **p != PieceState::Done).count();
        assert_eq!(s.remaining, not_done);
    }

    #[test]
    fn invariants_hold_under_random_operations() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..50 {
            let mut s = Scheduler::new(12, &[]);
            let sources: Vec<_> = (0..5).map(|_| s.add_source()).collect();
            for _ in 0..400 {
                let source = sources[rand(sources.len())];
                let held: Vec<u32> = s.inflight[source].iter().copied().collect();
                match rand(6) {
                    0 | 1 => {
                        let _ = s.next(source);
                    }
                    2 if !held.is_empty() => {
                        s.complete(source, held[rand(held.len())]);
                    }
                    3 if !held.is_empty() => s.release(source, held[rand(held.len())]),
                    4 if !held.is_empty() => s.reclaim(source, held[rand(held.len())]),
                    5 if rand(10) == 0 => s.drop_source(source),
                    _ => {}
                }
                check(&s);
                if s.remaining() == 0 {
                    assert_eq!(s.next(source), Next::Finished);
                    break;
                }
            }
        }
    }
}
