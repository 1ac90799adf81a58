//! The local backend: worker processes of this executable on this machine.
//!
//! Each child gets a stdin pipe it treats as a lifeline (`--stdin-lifeline`: EOF
//! cancels its run, so a coordinator that dies, even by SIGKILL, stops its workers),
//! stdout read line by line into [`Event::Line`]s, stderr kept as a bounded tail, and
//! `kill_on_drop`. Stopping closes the stdins; killing sends SIGKILL. Every child is
//! waited for (no zombies, no orphans once [`Local::finish`] returns).

use std::collections::VecDeque;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::{Event, WorkerEnd};

/// Lines of stderr kept per worker.
const TAIL_LINES: usize = 20;
/// Longest stderr line kept (characters).
const TAIL_WIDTH: usize = 500;
/// Longest stdout line read (a worker interval line is a few KiB).
const MAX_LINE: u64 = 16 << 20;

pub(super) struct Local {
    stdins: Vec<Option<ChildStdin>>,
    kill: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Local {
    /// Starts worker `i` of `n` for every i: `exe` + `args` + `--worker-index=i
    /// --stdin-lifeline`. A worker that cannot start is reported as `NeverStarted`.
    pub(super) fn spawn(exe: &Path, args: &[String], n: u32, tx: mpsc::Sender<Event>) -> Self {
        let (kill, kill_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut stdins = Vec::new();
        for worker in 0..n {
            let spawned = Command::new(exe)
                .args(args)
                .arg(format!("--worker-index={worker}"))
                .arg("--stdin-lifeline")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            let tx = tx.clone();
            match spawned {
                Ok(mut child) => {
                    tracing::info!(worker, pid = child.id(), "started a load worker");
                    stdins.push(child.stdin.take());
                    tasks.spawn(watch_child(worker, child, tx, kill_rx.clone()));
                }
                Err(e) => {
                    stdins.push(None);
                    let reason = format!("cannot run {}: {e}", exe.display());
                    tasks.spawn(async move {
                        let end = WorkerEnd::NeverStarted { reason };
                        let _ = tx.send(Event::Ended { worker, end }).await;
                    });
                }
            }
        }
        Self {
            stdins,
            kill,
            tasks,
        }
    }

    /// Tells every worker to stop: closes their stdin.
    pub(super) fn stop(&mut self) {
        self.stdins.iter_mut().for_each(|s| drop(s.take()));
    }

    /// Kills every worker still running (SIGKILL).
    pub(super) fn kill(&mut self) {
        self.stop();
        let _ = self.kill.send(true);
    }

    pub(super) fn killed(&self) -> bool {
        *self.kill.borrow()
    }

    /// Kills what still runs and waits for every child.
    pub(super) async fn finish(mut self) {
        self.kill();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Reads one child's output until it exits, then reports how it ended.
async fn watch_child(
    worker: u32,
    mut child: Child,
    tx: mpsc::Sender<Event>,
    mut kill: watch::Receiver<bool>,
) {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let lines = async {
        if let Some(out) = stdout {
            read_lines(out, |line| {
                let tx = tx.clone();
                async move { tx.send(Event::Line { worker, line }).await.is_ok() }
            })
            .await;
        }
    };
    let keep_tail = async {
        if let Some(err) = stderr {
            read_lines(err, |line| {
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line.chars().take(TAIL_WIDTH).collect::<String>());
                }
                async { true }
            })
            .await;
        }
    };
    let status = async {
        let killed = tokio::select! {
            s = child.wait() => Some(s),
            r = kill.wait_for(|k| *k) => {
                drop(r);
                None
            }
        };
        match killed {
            Some(s) => s,
            None => {
                let _ = child.start_kill();
                child.wait().await
            }
        }
    };
    let ((), (), status) = tokio::join!(lines, keep_tail, status);
    let tail: Vec<String> = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let end = match status {
        Ok(s) => ended(s, tail),
        Err(e) => WorkerEnd::Failed {
            reason: format!("cannot wait for it: {e}"),
            tail,
        },
    };
    let _ = tx.send(Event::Ended { worker, end }).await;
}

/// Calls `f` with each line (lossy UTF-8, without the newline) until EOF, an error, a
/// line longer than [`MAX_LINE`], or `f` returns false.
async fn read_lines<R, F, Fut>(r: R, mut f: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use tokio::io::AsyncReadExt as _;
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut r).take(MAX_LINE).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() != Some(&b'\n') && buf.len() as u64 >= MAX_LINE {
            return;
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if !f(String::from_utf8_lossy(&buf).into_owned()).await {
            return;
        }
    }
}

/// How a child ended: 0 → `Exited`; another code or a signal → `Failed` with its tail.
fn ended(s: ExitStatus, tail: Vec<String>) -> WorkerEnd {
    use std::os::unix::process::ExitStatusExt as _;
    match (s.code(), s.signal()) {
        (Some(0), _) => WorkerEnd::Exited { code: 0 },
        (Some(code), _) => WorkerEnd::Failed {
            reason: format!("exited with code {code}"),
            tail,
        },
        (None, Some(sig)) => WorkerEnd::Failed {
            reason: format!("killed by {}", signal_name(sig)),
            tail,
        },
        (None, None) => WorkerEnd::Failed {
            reason: format!("ended with {s}"),
            tail,
        },
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        6 => "SIGABRT".into(),
        9 => "SIGKILL".into(),
        11 => "SIGSEGV".into(),
        13 => "SIGPIPE".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}
