//! Routes: where a peer id can be reached directly, learnt from traffic, aging out.
//!
//! A route is learnt from every authenticated datagram (its sender at its source address),
//! from lookup answers and from the discovery index. It lives `route_ttl` after it was
//! last confirmed. The table is bounded; when full, the entry closest to expiry goes.
//! Without a route, best-effort data travels indirectly up the cell tree (see
//! [`super::frame::Frame::Routed`]) until a cell that knows the destination sends it on.

use super::DetMap;
use super::id::{Addr, PeerId};
use super::time::Instant;

/// The route table.
#[derive(Clone, Debug)]
pub struct Routes {
    map: DetMap<PeerId, (Addr, Instant)>,
    ttl: u64,
    cap: usize,
}

impl Routes {
    /// A table whose entries live `ttl` ns, holding at most `cap` entries.
    pub fn new(ttl: u64, cap: usize) -> Routes {
        Routes {
            map: DetMap::default(),
            ttl,
            cap: cap.max(1),
        }
    }

    /// `id` is at `addr` as of `now`.
    pub fn learn(&mut self, id: PeerId, addr: Addr, now: Instant) {
        let exp = now.after(self.ttl);
        if let Some(e) = self.map.get_mut(&id) {
            *e = (addr, exp);
            return;
        }
        if self.map.len() >= self.cap {
            self.age(now);
            if self.map.len() >= self.cap
                && let Some(k) = self.map.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| *k)
            {
                self.map.remove(&k);
            }
        }
        self.map.insert(id, (addr, exp));
    }

    /// The address of `id`, if a live route exists.
    pub fn get(&self, id: PeerId, now: Instant) -> Option<Addr> {
        self.map.get(&id).filter(|e| e.1 > now).map(|e| e.0)
    }

    /// Forget `id` (it died or left).
    pub fn forget(&mut self, id: PeerId) {
        self.map.remove(&id);
    }

    /// Drop expired routes.
    pub fn age(&mut self, now: Instant) {
        self.map.retain(|_, e| e.1 > now);
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_age_out_and_stay_bounded() {
        let a = Addr("10.0.0.1:1".parse().unwrap());
        let mut r = Routes::new(100, 3);
        r.learn(PeerId(1), a, Instant(0));
        assert_eq!(r.get(PeerId(1), Instant(99)), Some(a));
        assert_eq!(r.get(PeerId(1), Instant(100)), None);
        for i in 2..10 {
            r.learn(PeerId(i), a, Instant(i as u64));
        }
        assert!(r.len() <= 3);
        assert!(r.get(PeerId(9), Instant(10)).is_some());
        r.age(Instant(1000));
        assert!(r.is_empty());
    }
}
