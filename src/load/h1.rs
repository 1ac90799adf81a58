//! A minimal HTTP/1.1 client connection for the hot loop: the request is serialized
//! once per run and written with one `write`; the answer is parsed in place with
//! `httparse` from a reused buffer and its body skipped (Content-Length, chunked, or
//! until close). No allocation per request. HTTP/2 goes through hyper instead.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::record::ErrorKind;

/// Any byte stream (plain TCP or TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection's read buffer starts this small (answer heads are a few hundred bytes;
/// with thousands of connections the buffers are most of the generator's memory) and
/// doubles, up to [`BUF_MAX`], each time a read fills it (large bodies: fewer reads).
const BUF: usize = 2 * 1024;
const BUF_MAX: usize = 16 * 1024;
/// Longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// Why an exchange failed.
pub(crate) enum H1Error {
    /// The kept-alive connection was closed before any byte of the answer: retry on a
    /// new connection (not a request failure).
    Stale,
    Failed(ErrorKind),
}

impl From<ErrorKind> for H1Error {
    fn from(k: ErrorKind) -> Self {
        H1Error::Failed(k)
    }
}

fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        io::ErrorKind::InvalidData => ErrorKind::Tls,
        _ => ErrorKind::Other,
    }
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// One HTTP/1.1 connection with its read buffer.
pub(crate) struct H1Conn {
    io: Box<dyn Io>,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Requests answered on this connection.
    served: u64,
    /// When the last request that waited for a batching yield was written: a closed
    /// loop's latency counts from the actual send, as wrk's does. (A connect before a
    /// send still counts in the latency: such a send does not yield.)
    sent_at: Option<std::time::Instant>,
    /// False after `Connection: close` or a close-delimited body.
    reusable: bool,
    /// A read filled the buffer: double it when it is next empty.
    grow: bool,
}

impl H1Conn {
    pub(crate) fn new(io: Box<dyn Io>) -> Self {
        Self {
            io,
            buf: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            served: 0,
            sent_at: None,
            reusable: true,
            grow: false,
        }
    }

    /// When the last request on this connection was written.
    pub(crate) fn sent_at(&self) -> Option<std::time::Instant> {
        self.sent_at
    }

    pub(crate) fn reusable(&self) -> bool {
        self.reusable
    }

    /// Reads more bytes; `Ok(false)` at end of stream.
    async fn fill(&mut self) -> Result<bool, ErrorKind> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.grow {
                self.grow = false;
                self.buf = vec![0; (self.buf.len() * 2).min(BUF_MAX)].into_boxed_slice();
            }
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                let mut bigger = vec![0; self.buf.len() * 2].into_boxed_slice();
                bigger[..self.end].copy_from_slice(&self.buf[..self.end]);
                self.buf = bigger;
            } else {
                return Err(ErrorKind::Protocol);
            }
        }
        let room = self.buf.len() - self.end;
        let n = self
            .io
            .read(&mut self.buf[self.end..])
            .await
            .map_err(|e| io_kind(&e))?;
        self.end += n;
        self.grow |= n == room && self.buf.len() < BUF_MAX;
        Ok(n > 0)
    }

    /// Like `fill`, but the end of the stream is an error (mid-answer).
    async fn more(&mut self) -> Result<(), ErrorKind> {
        if self.fill().await? {
            Ok(())
        } else {
            Err(ErrorKind::Reset)
        }
    }

    /// Skips `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> Result<(), ErrorKind> {
        loop {
            let avail = (self.end - self.start) as u64;
            let take = avail.min(n);
            self.start += take as usize;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.more().await?;
        }
    }

    /// Returns the next line (without CRLF) as a range of `buf`, consuming it.
    async fn line(&mut self) -> Result<(usize, usize), ErrorKind> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let r = (self.start, self.start + i);
                self.start += i + 2;
                return Ok(r);
            }
            if self.end - self.start > 4096 {
                return Err(ErrorKind::Protocol);
            }
            self.more().await?;
        }
    }

    /// Sends `req` (a complete serialized request) and reads the whole answer.
    /// Returns the status and the body size.
    ///
    /// With `batch`, a request on a kept-alive connection is sent only after the
    /// runtime's current pass over ready tasks (one [`tokio::task::yield_now`]): the
    /// connections whose answers arrived together then read and record them all first
    /// and send their next requests back to back, so the server finds them ready
    /// together in one `epoll_wait` instead of being woken for each (how wrk's event
    /// loop batches: all reads, then all writes). The closed loop uses it; an open
    /// loop sends at its slot.
    pub(crate) async fn exchange(
        &mut self,
        req: &[u8],
        head: bool,
        batch: bool,
    ) -> Result<(u16, u64), H1Error> {
        let reused = self.served > 0;
        if batch && reused {
            tokio::task::yield_now().await;
            self.sent_at = Some(std::time::Instant::now());
        }
        if let Err(e) = self.io.write_all(req).await {
            return Err(if reused {
                H1Error::Stale
            } else {
                io_kind(&e).into()
            });
        }
        // The head, skipping 1xx interim answers.
        let (status, framing) = loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(n)) => {
                        let code = resp.code.unwrap_or(0);
                        if code < 100 {
                            return Err(ErrorKind::Protocol.into());
                        }
                        let mut framing = Framing::UntilClose;
                        let mut close = resp.version == Some(0);
                        for h in resp.headers.iter() {
                            if h.name.eq_ignore_ascii_case("content-length") {
                                let len = std::str::from_utf8(h.value)
                                    .ok()
                                    .and_then(|v| v.trim().parse::<u64>().ok())
                                    .ok_or(ErrorKind::Protocol)?;
                                if !matches!(framing, Framing::Chunked) {
                                    framing = Framing::Length(len);
                                }
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                if h.value.to_ascii_lowercase().ends_with(b"chunked") {
                                    framing = Framing::Chunked;
                                }
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                let v = h.value.to_ascii_lowercase();
                                if v.windows(5).any(|w| w == b"close") {
                                    close = true;
                                } else if v.windows(10).any(|w| w == b"keep-alive") {
                                    close = false;
                                }
                            }
                        }
                        if head || code == 204 || code == 304 || (100..200).contains(&code) {
                            framing = Framing::Empty;
                        }
                        Some((n, code, framing, close))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => return Err(ErrorKind::Protocol.into()),
                }
            };
            match parsed {
                Some((n, code, framing, close)) => {
                    self.start += n;
                    if (100..200).contains(&code) && code != 101 {
                        continue;
                    }
                    if close {
                        self.reusable = false;
                    }
                    break (code, framing);
                }
                None => match self.fill().await {
                    Ok(true) => {}
                    // Closed or reset before any byte of the answer on a reused
                    // connection: the server dropped an idle keep-alive connection.
                    Ok(false) | Err(ErrorKind::Reset) if reused && self.start == self.end => {
                        return Err(H1Error::Stale);
                    }
                    Ok(false) => return Err(ErrorKind::Reset.into()),
                    Err(k) => return Err(k.into()),
                },
            }
        };
        let bytes = match framing {
            Framing::Empty => 0,
            Framing::Length(n) => {
                self.skip(n).await?;
                n
            }
            Framing::Chunked => self.chunked().await?,
            Framing::UntilClose => {
                self.reusable = false;
                let mut n = (self.end - self.start) as u64;
                self.start = self.end;
                while self.fill().await? {
                    n += (self.end - self.start) as u64;
                    self.start = self.end;
                }
                n
            }
        };
        self.served += 1;
        Ok((status, bytes))
    }

    /// Skips a chunked body (and its trailers); returns the data size.
    async fn chunked(&mut self) -> Result<u64, ErrorKind> {
        let mut total = 0u64;
        loop {
            let (a, b) = self.line().await?;
            let line = &self.buf[a..b];
            let hex = line.split(|c| *c == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                .ok_or(ErrorKind::Protocol)?;
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let (a, b) = self.line().await?;
                    if a == b {
                        return Ok(total);
                    }
                }
            }
            self.skip(size).await?;
            total += size;
            let (a, b) = self.line().await?;
            if a != b {
                return Err(ErrorKind::Protocol);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(answer: &'static [u8], head: bool) -> Result<(u16, u64), ErrorKind> {
        let (client, mut server) = tokio::io::duplex(64);
        let srv = tokio::spawn(async move {
            let mut req = [0u8; 128];
            let _ = server.read(&mut req).await;
            // Dribble the answer in small pieces to exercise partial parsing.
            for piece in answer.chunks(7) {
                let _ = server.write_all(piece).await;
            }
        });
        let mut c = H1Conn::new(Box::new(client));
        let r = c
            .exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", head, false)
            .await
            .map_err(|e| match e {
                H1Error::Stale => ErrorKind::Other,
                H1Error::Failed(k) => k,
            });
        let _ = srv.await;
        r
    }

    /// A stream that notes each completed read and write (connection id, 'r' / 'w').
    struct Logged {
        id: u8,
        inner: tokio::io::DuplexStream,
        log: std::sync::Arc<std::sync::Mutex<Vec<(u8, char)>>>,
    }

    impl Logged {
        fn note(&self, op: char) {
            if let Ok(mut l) = self.log.lock() {
                l.push((self.id, op));
            }
        }
    }

    impl AsyncRead for Logged {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let before = buf.filled().len();
            let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
            if r.is_ready() && buf.filled().len() > before {
                self.note('r');
            }
            r
        }
    }

    impl AsyncWrite for Logged {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            data: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
            if r.is_ready() {
                self.note('w');
            }
            r
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Two connections, two exchanges each, both answers already waiting: the order
    /// of their reads and writes on a single-threaded runtime.
    async fn two_conns(batch: bool) -> Vec<(u8, char)> {
        const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let mut servers = Vec::new();
        for id in 0..2u8 {
            let (client, mut server) = tokio::io::duplex(4096);
            let _ = server.write_all(&[OK, OK].concat()).await;
            servers.push(server);
            let mut c = H1Conn::new(Box::new(Logged {
                id,
                inner: client,
                log: log.clone(),
            }));
            tasks.push(tokio::spawn(async move {
                for _ in 0..2 {
                    let r = c.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, batch);
                    assert!(r.await.is_ok());
                }
            }));
        }
        for t in tasks {
            assert!(t.await.is_ok());
        }
        drop(servers);
        log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn batched_sends_wait_for_the_other_ready_connections() {
        // Both answers arrive in one read, so each connection logs w, r, w. Batched:
        // both connections read their first answers before either sends its second
        // request (the two second requests leave back to back).
        let second_writes = |log: &[(u8, char)]| {
            log.iter()
                .enumerate()
                .filter(|(_, e)| e.1 == 'w')
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        let log = two_conns(true).await;
        let w = second_writes(&log);
        assert_eq!(w.len(), 4, "{log:?}");
        assert_eq!(log.iter().filter(|e| e.1 == 'r').count(), 2, "{log:?}");
        // The last read comes before the first second write.
        let last_read = log.iter().rposition(|e| e.1 == 'r').unwrap_or(usize::MAX);
        assert!(w[2] > last_read, "{log:?}");
        // Unbatched: connection 0 sends again at once after its answer.
        let log = two_conns(false).await;
        assert_eq!(
            log,
            [(0, 'w'), (0, 'r'), (0, 'w'), (1, 'w'), (1, 'r'), (1, 'w')],
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn parses_lengths_chunks_interim_and_close() {
        let r = roundtrip(
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world\n",
            false,
        )
        .await;
        assert_eq!(r.ok(), Some((200, 12)));
        let r = roundtrip(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 NO\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(r.ok(), Some((503, 21)));
        let r = roundtrip(b"HTTP/1.0 200 OK\r\n\r\nuntil close", false).await;
        assert_eq!(r.ok(), Some((200, 11)));
        let r = roundtrip(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).await;
        assert_eq!(r.ok(), Some((200, 0)));
        let r = roundtrip(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", false).await;
        assert_eq!(r.err(), Some(ErrorKind::Reset));
        let r = roundtrip(b"HTTP/1.1 042 Odd\r\nContent-Length: 0\r\n\r\n", false).await;
        assert_eq!(r.err(), Some(ErrorKind::Protocol));
        let r = roundtrip(b"garbage\r\n\r\n", false).await;
        assert_eq!(r.err(), Some(ErrorKind::Protocol));
        let r = roundtrip(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).await;
        assert_eq!(r.err(), Some(ErrorKind::Protocol));
    }
}
