//! Finding cgroup hierarchies and the calling process's cpuset.

use std::path::PathBuf;

use crate::cpu::CpuSet;

/// Which cgroup version carries the cpuset controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpusetMount {
    /// cgroup v1: a hierarchy with the `cpuset` controller, mounted at this path.
    V1(PathBuf),
    /// cgroup v2: the unified hierarchy, mounted at this path, with `cpuset` available.
    V2(PathBuf),
}

/// Finds where the cpuset controller is mounted, from `/proc/self/mountinfo`.
pub fn cpuset_mount() -> Option<CpusetMount> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v2 = None;
    for line in info.lines() {
        // mountinfo: id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        let (pre, post) = line.split_once(" - ")?;
        let mountpoint = pre.split_whitespace().nth(4)?;
        let mut post = post.split_whitespace();
        let fstype = post.next()?;
        let superopts = post.nth(1).unwrap_or("");
        if fstype == "cgroup" && superopts.split(',').any(|o| o == "cpuset") {
            return Some(CpusetMount::V1(PathBuf::from(mountpoint)));
        }
        if fstype == "cgroup2" && v2.is_none() {
            let path = PathBuf::from(mountpoint);
            let controllers =
                std::fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "cpuset") {
                v2 = Some(CpusetMount::V2(path));
            }
        }
    }
    v2
}

/// The calling process's cpuset cgroup folder, if the controller is mounted.
pub fn own_cpuset_dir() -> Option<(CpusetMount, PathBuf)> {
    let mount = cpuset_mount()?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match mount {
            CpusetMount::V1(_) => ctrls.split(',').any(|c| c == "cpuset"),
            CpusetMount::V2(_) => ctrls.is_empty(),
        };
        wanted.then(|| path.trim_start_matches('/').to_string())
    })?;
    let base = match &mount {
        CpusetMount::V1(p) | CpusetMount::V2(p) => p.join(rel),
    };
    Some((mount, base))
}

/// The calling process's cpuset cgroup's effective CPUs, where they can be read.
pub fn own_effective_cpus() -> Option<CpuSet> {
    let (mount, dir) = own_cpuset_dir()?;
    let file = match mount {
        CpusetMount::V1(_) => "cpuset.effective_cpus",
        CpusetMount::V2(_) => "cpuset.cpus.effective",
    };
    std::fs::read_to_string(dir.join(file)).ok()?.parse().ok()
}

/// The RT cores an active shield reserved for rtpm, when the calling process sits in that
/// shield's general cpuset (cgroup v1: `rtpm.general`, beside `rtpm.rt`). Such a process
/// may move its own threads into `rtpm.rt` (root), so those cores are its to use.
pub fn shield_rt_cpus_for_self() -> Option<CpuSet> {
    let (mount, dir) = own_cpuset_dir()?;
    let CpusetMount::V1(root) = mount else {
        return None;
    };
    if dir != root.join(crate::shield::GENERAL_GROUP) {
        return None;
    }
    let rt = root.join(crate::shield::RT_GROUP);
    let cpus: CpuSet = std::fs::read_to_string(rt.join("cpuset.cpus"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (!cpus.is_empty()).then_some(cpus)
}
