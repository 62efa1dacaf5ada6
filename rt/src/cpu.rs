//! CPU topology: which CPUs this process may use, and what each one is.
//!
//! The allowed set comes from the process's affinity (`sched_getaffinity`) intersected
//! with its cpuset cgroup's effective CPUs, never from sysfs "online": a container or a
//! shield may give the process fewer CPUs than the machine has, and planning for CPUs it
//! cannot run on would silently put two roles on one core.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::sys;

/// The largest CPU id a [`CpuSet`] holds, plus one (as glibc's `cpu_set_t`).
pub const MAX_CPUS: usize = 1024;
const WORDS: usize = MAX_CPUS / 64;

/// A set of CPU ids, as a fixed bitset (`Copy`, no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuSet {
    bits: [u64; WORDS],
}

impl Default for CpuSet {
    fn default() -> CpuSet {
        CpuSet::empty()
    }
}

impl CpuSet {
    /// No CPUs.
    pub const fn empty() -> CpuSet {
        CpuSet { bits: [0; WORDS] }
    }

    /// Just `cpu`. Ids at or above [`MAX_CPUS`] are ignored.
    pub fn single(cpu: usize) -> CpuSet {
        let mut s = CpuSet::empty();
        s.insert(cpu);
        s
    }

    /// The CPUs in `ids`. Ids at or above [`MAX_CPUS`] are ignored.
    pub fn from_ids(ids: impl IntoIterator<Item = usize>) -> CpuSet {
        let mut s = CpuSet::empty();
        for id in ids {
            s.insert(id);
        }
        s
    }

    /// The CPUs this process may run on: its affinity mask intersected with its cpuset
    /// cgroup's effective CPUs (v1 or v2), where the cgroup can be read.
    pub fn allowed() -> Result<CpuSet> {
        let affinity = sys::cpu::affinity_of(0)?;
        let mut set = match sys::cgroup::own_effective_cpus() {
            Some(cg) if !affinity.intersection(&cg).is_empty() => affinity.intersection(&cg),
            _ => affinity,
        };
        // Under an active shield this process was moved to the general cpuset with the
        // rest of the system; the RT cores stay its own (its RT threads join `rtpm.rt`).
        if let Some(rt) = sys::cgroup::shield_rt_cpus_for_self() {
            for cpu in rt.iter() {
                set.insert(cpu);
            }
        }
        Ok(set)
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.bits[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// Adds `cpu`. Ids at or above [`MAX_CPUS`] are ignored.
    pub fn insert(&mut self, cpu: usize) {
        if cpu < MAX_CPUS {
            self.bits[cpu / 64] |= 1 << (cpu % 64);
        }
    }

    /// Removes `cpu`.
    pub fn remove(&mut self, cpu: usize) {
        if cpu < MAX_CPUS {
            self.bits[cpu / 64] &= !(1 << (cpu % 64));
        }
    }

    /// The CPU ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_CPUS).filter(move |&c| self.contains(c))
    }

    /// How many CPUs are in the set.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set has no CPU.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// The highest CPU id in the set.
    pub fn last(&self) -> Option<usize> {
        (0..WORDS)
            .rev()
            .find(|&i| self.bits[i] != 0)
            .map(|i| i * 64 + 63 - self.bits[i].leading_zeros() as usize)
    }

    /// The CPUs in both sets.
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        let mut out = *self;
        for (a, b) in out.bits.iter_mut().zip(other.bits.iter()) {
            *a &= *b;
        }
        out
    }

    /// The CPUs in either set.
    pub fn union(&self, other: &CpuSet) -> CpuSet {
        let mut out = *self;
        for (a, b) in out.bits.iter_mut().zip(other.bits.iter()) {
            *a |= *b;
        }
        out
    }

    /// The CPUs in `self` but not in `other`.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        let mut out = *self;
        for (a, b) in out.bits.iter_mut().zip(other.bits.iter()) {
            *a &= !*b;
        }
        out
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.difference(other).is_empty()
    }

    /// The kernel's list format, e.g. `0-3,6`. Empty for an empty set.
    pub fn to_list(&self) -> String {
        let mut out = String::new();
        let mut ids = self.iter().peekable();
        while let Some(start) = ids.next() {
            let mut end = start;
            while ids.peek() == Some(&(end + 1)) {
                end += 1;
                ids.next();
            }
            if !out.is_empty() {
                out.push(',');
            }
            if end == start {
                out.push_str(&start.to_string());
            } else {
                out.push_str(&format!("{start}-{end}"));
            }
        }
        out
    }
}

impl serde::Serialize for CpuSet {
    /// A list of CPU ids.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({})", self.to_list())
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("(none)")
        } else {
            f.write_str(&self.to_list())
        }
    }
}

impl FromStr for CpuSet {
    type Err = Error;

    /// Parses the kernel's list format: `0-3,6,8-9`; whitespace and an empty string
    /// (the empty set) are accepted.
    fn from_str(s: &str) -> Result<CpuSet> {
        let bad = |part: &str| {
            Error::Invalid(format!(
                "`{part}` in CPU list `{}` is not a CPU id or range; write ids and ranges such as `0-3,6`",
                s.trim()
            ))
        };
        let mut set = CpuSet::empty();
        for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: usize = lo.parse().map_err(|_| bad(part))?;
            let hi: usize = hi.parse().map_err(|_| bad(part))?;
            if lo > hi || hi >= MAX_CPUS {
                return Err(bad(part));
            }
            for c in lo..=hi {
                set.insert(c);
            }
        }
        Ok(set)
    }
}

/// What is known about one CPU.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Core {
    /// The CPU id, as the kernel numbers it.
    pub id: usize,
    /// The hardware threads that share this CPU's physical core, itself included.
    pub smt_siblings: CpuSet,
    /// The NUMA node, where the kernel reports one.
    pub numa_node: Option<usize>,
    /// Listed in `/sys/devices/system/cpu/isolated` (`isolcpus=`).
    pub isolated: bool,
    /// Listed in `/sys/devices/system/cpu/nohz_full`.
    pub nohz_full: bool,
}

/// The CPUs this process may use, each described.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Topology {
    /// The allowed set (see [`CpuSet::allowed`]).
    pub allowed: CpuSet,
    /// One entry per allowed CPU, in id order.
    pub cores: Vec<Core>,
}

impl Topology {
    /// Reads the topology of the allowed CPUs from sysfs.
    pub fn discover() -> Result<Topology> {
        Topology::from_sysfs(CpuSet::allowed()?, Path::new("/sys/devices/system/cpu"))
    }

    /// Reads the topology of `allowed` from a sysfs CPU folder (a test may pass a fake one).
    pub fn from_sysfs(allowed: CpuSet, root: &Path) -> Result<Topology> {
        let list = |name: &str| -> CpuSet {
            std::fs::read_to_string(root.join(name))
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default()
        };
        let isolated = list("isolated");
        let nohz = list("nohz_full");
        let cores = allowed
            .iter()
            .map(|id| {
                let dir = root.join(format!("cpu{id}"));
                let smt_siblings =
                    std::fs::read_to_string(dir.join("topology/thread_siblings_list"))
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| CpuSet::single(id));
                let numa_node = std::fs::read_dir(&dir).ok().and_then(|entries| {
                    entries.flatten().find_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_prefix("node"))
                            .and_then(|n| n.parse().ok())
                    })
                });
                Core {
                    id,
                    smt_siblings,
                    numa_node,
                    isolated: isolated.contains(id),
                    nohz_full: nohz.contains(id),
                }
            })
            .collect();
        Ok(Topology { allowed, cores })
    }

    /// The entry for CPU `id`, if it is allowed.
    pub fn core(&self, id: usize) -> Option<&Core> {
        self.cores.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_format_round_trips() {
        for text in ["0", "0-3", "0-3,6", "1,3,5", "0-1,8-9,1023", ""] {
            let set: CpuSet = text.parse().unwrap();
            assert_eq!(set.to_list(), text);
        }
        assert_eq!(" 0-2 , 4\n".parse::<CpuSet>().unwrap().to_list(), "0-2,4");
    }

    #[test]
    fn list_format_refuses_garbage() {
        for text in ["a", "3-1", "0-", "1024", "0-2000", "1;2"] {
            assert!(text.parse::<CpuSet>().is_err(), "{text} parsed");
        }
    }

    #[test]
    fn set_algebra() {
        let a = CpuSet::from_ids([0, 1, 2, 70]);
        let b = CpuSet::from_ids([2, 3, 70]);
        assert_eq!(a.intersection(&b), CpuSet::from_ids([2, 70]));
        assert_eq!(a.union(&b), CpuSet::from_ids([0, 1, 2, 3, 70]));
        assert_eq!(a.difference(&b), CpuSet::from_ids([0, 1]));
        assert_eq!(a.len(), 4);
        assert_eq!(a.last(), Some(70));
        assert_eq!(CpuSet::empty().last(), None);
        assert!(CpuSet::from_ids([2]).is_subset(&a));
        assert!(!b.is_subset(&a));
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 1, 2, 70]);
    }

    #[test]
    fn allowed_is_the_affinity_mask() {
        let allowed = CpuSet::allowed().unwrap();
        assert!(!allowed.is_empty());
        let n = std::thread::available_parallelism().unwrap().get();
        assert_eq!(allowed.len(), n, "std and rtpm disagree on the usable CPUs");
    }

    #[test]
    fn sysfs_topology_from_a_fake_tree() {
        let dir = std::env::temp_dir().join(format!("rtpm-cpu-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (id, sib, node) in [(0, "0,2", 0), (1, "1,3", 0), (2, "0,2", 1), (3, "1,3", 1)] {
            let d = dir.join(format!("cpu{id}"));
            std::fs::create_dir_all(d.join("topology")).unwrap();
            std::fs::create_dir_all(d.join(format!("node{node}"))).unwrap();
            std::fs::write(d.join("topology/thread_siblings_list"), sib).unwrap();
        }
        std::fs::write(dir.join("isolated"), "2-3\n").unwrap();
        std::fs::write(dir.join("nohz_full"), "3\n").unwrap();
        let topo = Topology::from_sysfs(CpuSet::from_ids([1, 2, 3]), &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(topo.cores.len(), 3);
        let c2 = topo.core(2).unwrap();
        assert_eq!(c2.smt_siblings, CpuSet::from_ids([0, 2]));
        assert_eq!(c2.numa_node, Some(1));
        assert!(c2.isolated && !c2.nohz_full);
        assert!(topo.core(3).unwrap().nohz_full);
        assert!(!topo.core(1).unwrap().isolated);
        assert!(topo.core(0).is_none());
    }
}
