//! Copying both ways with half-close, holding a buffer only while bytes
//! are in flight: an idle proxied connection owns no copy buffer (buffers
//! come from a small per-thread pool), which keeps idle memory low.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// One TLS record's worth of plaintext.
const BUF_SIZE: usize = 16 * 1024;
/// Buffers kept per thread for reuse.
const POOL_MAX: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buf() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

fn give_buf(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_MAX {
            pool.push(buf);
        }
    });
}

/// Bytes moved each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Copied {
    pub(crate) a_to_b: u64,
    pub(crate) b_to_a: u64,
}

#[derive(Default)]
struct Direction {
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    need_flush: bool,
    read_done: bool,
    done: bool,
    total: u64,
}

impl Direction {
    /// Moves bytes from `r` to `w` until `r` ends (then shuts `w` down) or
    /// nothing more can be done now. `moved` is set when bytes moved.
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        moved: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        let mut r = r;
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(buf) = self.buf.as_ref().filter(|_| self.start < self.end) {
                let n = ready!(w.as_mut().poll_write(cx, &buf[self.start..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.start += n;
                self.total += n as u64;
                *moved = true;
                continue;
            }
            if let Some(buf) = self.buf.take() {
                self.start = 0;
                self.end = 0;
                self.need_flush = true;
                give_buf(buf);
            }
            if self.need_flush {
                ready!(w.as_mut().poll_flush(cx))?;
                self.need_flush = false;
            }
            if self.read_done {
                ready!(w.as_mut().poll_shutdown(cx))?;
                self.done = true;
                continue;
            }
            let mut buf = take_buf();
            let mut read_buf = ReadBuf::new(&mut buf);
            match r.as_mut().poll_read(cx, &mut read_buf) {
                Poll::Pending => {
                    give_buf(buf);
                    return Poll::Pending;
                }
                // A TLS peer closing without close_notify is still the end
                // of its stream.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    give_buf(buf);
                    self.read_done = true;
                }
                Poll::Ready(Err(e)) => {
                    give_buf(buf);
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => {
                    let n = read_buf.filled().len();
                    if n == 0 {
                        give_buf(buf);
                        self.read_done = true;
                    } else {
                        self.end = n;
                        self.buf = Some(buf);
                        *moved = true;
                    }
                }
            }
        }
    }
}

/// Copies `a` ⇄ `b` until both directions ended; each end's EOF is passed
/// on as a shutdown of the other's write side (half-close). Fails with
/// `TimedOut` after `idle` without bytes in either direction.
pub(crate) fn bidirectional<'s, A, B>(
    a: &'s mut A,
    b: &'s mut B,
    idle: Duration,
) -> impl Future<Output = io::Result<Copied>> + 's
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    Bidirectional {
        a,
        b,
        a_to_b: Direction::default(),
        b_to_a: Direction::default(),
        idle,
        last_moved: Instant::now(),
        timer: Box::pin(tokio::time::sleep(idle)),
    }
}

struct Bidirectional<'s, A: ?Sized, B: ?Sized> {
    a: &'s mut A,
    b: &'s mut B,
    a_to_b: Direction,
    b_to_a: Direction,
    idle: Duration,
    /// When bytes last moved. The timer is only moved forward when it
    /// fires early (not on every read), which keeps the timer wheel out of
    /// the copy loop.
    last_moved: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<A, B> Future for Bidirectional<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    type Output = io::Result<Copied>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut moved = false;
        let ab = this.a_to_b.poll(
            cx,
            Pin::new(&mut *this.a),
            Pin::new(&mut *this.b),
            &mut moved,
        )?;
        let ba = this.b_to_a.poll(
            cx,
            Pin::new(&mut *this.b),
            Pin::new(&mut *this.a),
            &mut moved,
        )?;
        if ab.is_ready() && ba.is_ready() {
            return Poll::Ready(Ok(Copied {
                a_to_b: this.a_to_b.total,
                b_to_a: this.b_to_a.total,
            }));
        }
        if moved {
            this.last_moved = Instant::now();
        }
        while this.timer.as_mut().poll(cx).is_ready() {
            let due = this.last_moved + this.idle;
            if due <= Instant::now() {
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
            this.timer.as_mut().reset(due);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        let (mut a_outer, mut a) = tokio::io::duplex(1024);
        let (mut b, mut b_outer) = tokio::io::duplex(1024);
        let task =
            tokio::spawn(
                async move { bidirectional(&mut a, &mut b, Duration::from_secs(5)).await },
            );
        let big = vec![7u8; 300_000];
        let send = big.clone();
        let writer = tokio::spawn(async move {
            a_outer.write_all(&send).await.unwrap();
            a_outer.shutdown().await.unwrap();
            let mut back = Vec::new();
            a_outer.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        b_outer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, big);
        // After a's EOF, b can still answer.
        b_outer.write_all(b"reply").await.unwrap();
        b_outer.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply");
        let copied = task.await.unwrap().unwrap();
        assert_eq!(
            copied,
            Copied {
                a_to_b: 300_000,
                b_to_a: 5
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_the_copy_alive_past_idle() {
        let (mut a_outer, mut a) = tokio::io::duplex(64);
        let (mut b, mut b_outer) = tokio::io::duplex(64);
        let idle = Duration::from_secs(30);
        let task = tokio::spawn(async move { bidirectional(&mut a, &mut b, idle).await });
        // A byte every 20 s for 100 s: never 30 s without traffic.
        let mut got = [0u8; 1];
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            a_outer.write_all(b"x").await.unwrap();
            b_outer.read_exact(&mut got).await.unwrap();
        }
        assert!(!task.is_finished());
        // Then silence: timed out 30 s after the last byte, not before.
        let last = tokio::time::Instant::now();
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(last.elapsed(), idle);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_times_out() {
        let (_a_outer, mut a) = tokio::io::duplex(64);
        let (mut b, _b_outer) = tokio::io::duplex(64);
        let err = bidirectional(&mut a, &mut b, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
