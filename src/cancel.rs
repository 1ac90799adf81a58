//! One cancellation type for the whole process: the load engine, the mesh, the cluster
//! client and the drill runner all stop on a [`Cancel`].
//!
//! A `Cancel` counts how often it was cancelled and remembers why the first time
//! ([`Reason`]): the first Ctrl-C stops a drill and starts its rollback, a second one
//! may abandon a slow rollback. [`Cancel::child`] makes a token that is cancelled with
//! its parent or on its own (the runner stops its background load with a child, while
//! a signal stops everything). [`Cancel::watch_signals`] turns SIGINT, SIGTERM and SIGHUP
//! into cancellations of one token.
//!
//! Cheap to clone and to poll: [`Cancel::is_cancelled`] is one atomic load per level,
//! so the load engine's hot loop may call it per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use tokio::sync::Notify;

/// Why a token was cancelled (the first time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// By the program (the end of a phase, a stop condition).
    Requested = 1,
    /// SIGINT (Ctrl-C).
    Interrupt = 2,
    /// SIGTERM.
    Terminate = 3,
    /// SIGHUP (the terminal went away).
    Hangup = 4,
}

impl Reason {
    fn from_u8(v: u8) -> Option<Reason> {
        match v {
            1 => Some(Reason::Requested),
            2 => Some(Reason::Interrupt),
            3 => Some(Reason::Terminate),
            4 => Some(Reason::Hangup),
            _ => None,
        }
    }

    /// `SIGINT`, `SIGTERM`, `SIGHUP`, or `a request`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Requested => "a request",
            Reason::Interrupt => "SIGINT",
            Reason::Terminate => "SIGTERM",
            Reason::Hangup => "SIGHUP",
        }
    }

    /// Whether a signal caused it (an interrupted run exits 130).
    pub fn is_signal(self) -> bool {
        !matches!(self, Reason::Requested)
    }
}

/// A cancellation token. Clones share it.
#[derive(Debug, Clone)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    parent: Option<Cancel>,
    count: AtomicU32,
    reason: AtomicU8,
    /// Shared by a whole family (root and children): any cancellation wakes every
    /// waiter of the family, which then checks its own condition.
    notify: Arc<Notify>,
}

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            parent: None,
            count: AtomicU32::new(0),
            reason: AtomicU8::new(0),
            notify: Arc::new(Notify::new()),
        }))
    }

    /// A token cancelled when this one is, or on its own (which leaves this one alone).
    pub fn child(&self) -> Cancel {
        Self(Arc::new(Inner {
            parent: Some(self.clone()),
            count: AtomicU32::new(0),
            reason: AtomicU8::new(0),
            notify: self.0.notify.clone(),
        }))
    }

    /// Cancels, by the program.
    pub fn cancel(&self) {
        self.cancel_by(Reason::Requested);
    }

    /// Cancels for `reason`; counts every call (a second Ctrl-C is a second call).
    pub fn cancel_by(&self, reason: Reason) {
        let _ =
            self.0
                .reason
                .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.0.count.fetch_add(1, Ordering::AcqRel);
        self.0.notify.notify_waiters();
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.0.count.load(Ordering::Acquire) > 0
            || self.0.parent.as_ref().is_some_and(Cancel::is_cancelled)
    }

    /// How often this token and its ancestors were cancelled in all.
    pub fn count(&self) -> u32 {
        self.0.count.load(Ordering::Acquire) + self.0.parent.as_ref().map_or(0, Cancel::count)
    }

    /// Why this token was cancelled: an ancestor's reason first (a signal that stopped
    /// everything explains more than the child's own end).
    pub fn reason(&self) -> Option<Reason> {
        self.0
            .parent
            .as_ref()
            .and_then(Cancel::reason)
            .or_else(|| Reason::from_u8(self.0.reason.load(Ordering::Acquire)))
    }

    /// Whether a signal cancelled this token (or an ancestor).
    pub fn signal(&self) -> Option<Reason> {
        self.reason().filter(|r| r.is_signal())
    }

    /// Resolves once the token is cancelled.
    pub async fn cancelled(&self) {
        self.cancelled_after(0).await;
    }

    /// Resolves once [`count`](Self::count) exceeds `n` (e.g. a second signal).
    pub async fn cancelled_after(&self, n: u32) {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.count() > n {
                return;
            }
            notified.await;
        }
    }

    /// Cancels this token on SIGINT, SIGTERM and SIGHUP, counting each one, from now
    /// until the returned guard is dropped. SIGHUP only when it is not ignored (`nohup
    /// meshdrill mesh up &` must outlive the terminal). Must be called inside a Tokio
    /// runtime (the listener is a task on it).
    pub fn watch_signals(&self) -> std::io::Result<SignalWatch> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = if crate::mesh::sys::is_ignored(libc::SIGHUP) {
            None
        } else {
            Some(signal(SignalKind::hangup())?)
        };
        let me = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let reason = tokio::select! {
                    Some(()) = int.recv() => Reason::Interrupt,
                    Some(()) = term.recv() => Reason::Terminate,
                    Some(()) = async {
                        match hup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => Reason::Hangup,
                    else => break,
                };
                me.cancel_by(reason);
            }
        });
        Ok(SignalWatch(task))
    }
}

/// Keeps signals turning into cancellations; stops on drop.
#[derive(Debug)]
pub struct SignalWatch(tokio::task::JoinHandle<()>);

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_follows_its_parent_but_not_the_other_way() {
        let root = Cancel::new();
        let a = root.child();
        let b = root.child();
        a.cancel();
        assert!(a.is_cancelled());
        assert!(!root.is_cancelled() && !b.is_cancelled());
        assert_eq!(a.reason(), Some(Reason::Requested));
        root.cancel_by(Reason::Terminate);
        assert!(b.is_cancelled());
        // The parent's signal explains more than the child's own end.
        assert_eq!(a.reason(), Some(Reason::Terminate));
        assert_eq!(a.signal(), Some(Reason::Terminate));
        root.cancel_by(Reason::Interrupt);
        assert_eq!(root.count(), 2);
        assert_eq!(
            root.reason(),
            Some(Reason::Terminate),
            "the first reason stays"
        );
        assert_eq!(a.count(), 3);
    }

    #[tokio::test]
    async fn waiters_wake_on_their_own_or_an_ancestors_cancel() {
        let root = Cancel::new();
        let child = root.child();
        let grandchild = child.child();
        let w = tokio::spawn({
            let g = grandchild.clone();
            async move { g.cancelled().await }
        });
        let second = tokio::spawn({
            let r = root.clone();
            async move { r.cancelled_after(1).await }
        });
        tokio::task::yield_now().await;
        assert!(!w.is_finished());
        root.cancel_by(Reason::Interrupt);
        tokio::time::timeout(std::time::Duration::from_secs(5), w)
            .await
            .expect("woken")
            .expect("task");
        assert!(!second.is_finished(), "one signal is not two");
        root.cancel_by(Reason::Interrupt);
        tokio::time::timeout(std::time::Duration::from_secs(5), second)
            .await
            .expect("woken by the second")
            .expect("task");
    }
}
