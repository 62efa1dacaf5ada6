//! What the tests that raise the real shield share: the check that this machine has a
//! cgroup v1 cpuset hierarchy with no shield up, and a guard that undoes the shield when
//! dropped, so a failing assertion cannot leave the system shielded.

use rtpm_rt::shield::{self, Cgroups, Version};

/// Undoes the shield when dropped (also while a panic unwinds).
pub struct Guard<'a>(pub &'a Cgroups);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if shield::status_on(self.0).map(|s| s.active).unwrap_or(false)
            && let Err(e) = shield::undo_on(self.0)
        {
            eprintln!("guard: undo failed: {e}");
        }
    }
}

/// The system's cpuset hierarchy, if it is cgroup v1 and no shield is up; otherwise the
/// reason to skip.
pub fn v1_unshielded() -> Result<Cgroups, String> {
    let cg = Cgroups::system().map_err(|e| e.to_string())?;
    if cg.version != Version::V1 {
        return Err("the cpuset controller is on cgroup v2; this test covers v1".into());
    }
    if shield::status_on(&cg).map_err(|e| e.to_string())?.active {
        return Err("a shield is already active on this machine; not touching it".into());
    }
    Ok(cg)
}
