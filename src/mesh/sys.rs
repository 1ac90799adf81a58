//! The two calls into the OS that need `unsafe`: the parent-death signal and signalling
//! a process by PID. Everything else in the mesh is safe code.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child get SIGKILL when the thread that spawned it dies — also when
/// meshdrill is killed with `kill -9` — so no Envoy or service outlives the mesh.
/// Linux only; elsewhere a no-op.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec. It only calls
        // prctl(2), getppid(2) and _exit(2), which are async-signal-safe, allocates
        // nothing and touches no lock or state of the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then we are orphaned.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Sends `signal` to `pid`. Callers check first that `pid` is a process meshdrill
/// started (see [`super::process::is_ours`]).
#[allow(unsafe_code)]
pub fn signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    if pid <= 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; pid > 0 so it
    // never signals a process group.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends `signal` to the process group `pgid` (a replica meshdrill started as the
/// leader of its own group). Refuses groups 0 and 1 (ours, init's).
#[allow(unsafe_code)]
pub fn signal_group(pgid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    if pgid <= 1 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; -pgid < -1
    // names exactly that process group.
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `signal` is ignored in this process (inherited SIG_IGN, as `nohup` sets for
/// SIGHUP): a handler installed for it would override the user's choice.
#[allow(unsafe_code)]
pub fn is_ignored(signal: libc::c_int) -> bool {
    // SAFETY: sigaction(2) with a null new action only reads the current disposition
    // into `old`, a zeroed plain-data struct we own.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}
