//! Running programs in network namespaces, for the lab tests and the live benchmark: root,
//! `ip netns exec`, the process behind it, and what /proc says of that process. Std only, so the
//! agent's live benchmark includes this file as it is.

use std::process::{Child, Command};
use std::time::Duration;

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `args` run inside namespace `ns`.
pub fn netns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// The program behind `ip netns exec` (`wrapper`): its child, or the wrapper itself once it
/// has exec'd in place into `comm`.
pub fn inner_pid(wrapper: &Child, comm: &str) -> u32 {
    for _ in 0..50 {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", wrapper.id())).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return pid;
        }
        if std::fs::read_to_string(format!("/proc/{}/comm", wrapper.id())).is_ok_and(|c| c.trim() == comm) {
            return wrapper.id();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wrapper.id()
}

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`), in KiB; 0 if absent.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User and system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// SIGINT, then waits: how a field engineer stops the agent.
pub fn interrupt(child: &mut Child) {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let _ = child.wait();
}
