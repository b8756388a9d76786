//! Non-blocking stdin/stdout pipes for the child side of the protocol.
//!
//! `tokio::io::stdin()` reads on a blocking thread, and a runtime waits for
//! that thread when it shuts down, so a component whose `main` returns would
//! hang until the supervisor closed its stdin; every stdout write would also
//! cross threads. When fd 0 and fd 1 are pipes (always, under the
//! supervisor) we duplicate them, set `O_NONBLOCK`, and drive them from the
//! runtime's reactor instead. When they are not pipes (a developer running a
//! connector from a terminal) we fall back to tokio's blocking wrappers rather
//! than make the terminal non-blocking under the shell.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One end of a pipe, registered with the reactor.
#[derive(Debug)]
pub struct Pipe {
    fd: AsyncFd<OwnedFd>,
}

/// The child's end of its stdin pipe, or tokio's stdin when fd 0 is not a pipe.
pub fn stdin() -> io::Result<Box<dyn AsyncRead + Send + Unpin>> {
    match Pipe::from_stdio(libc::STDIN_FILENO)? {
        Some(p) => Ok(Box::new(p)),
        None => Ok(Box::new(tokio::io::stdin())),
    }
}

/// The child's end of its stdout pipe, or tokio's stdout when fd 1 is not a pipe.
pub fn stdout() -> io::Result<Box<dyn AsyncWrite + Send + Unpin>> {
    match Pipe::from_stdio(libc::STDOUT_FILENO)? {
        Some(p) => Ok(Box::new(p)),
        None => Ok(Box::new(tokio::io::stdout())),
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Pipe {
    /// Duplicates `fd` as a non-blocking pipe end; `None` if it is not a pipe.
    fn from_stdio(fd: RawFd) -> io::Result<Option<Pipe>> {
        // SAFETY: `stat` is plain old data, so all-zero bytes are a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid, writable `stat` for the duration of the call.
        cvt(unsafe { libc::fstat(fd, &mut st) })?;
        if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return Ok(None);
        }
        // SAFETY: F_DUPFD_CLOEXEC takes an integer argument and returns a new fd we own.
        let dup = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: `dup` is a freshly created descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        // SAFETY: F_GETFL/F_SETFL take integer arguments on a descriptor we own.
        let flags = cvt(unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_GETFL) })?;
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
        // SAFETY: `owned` is a valid open descriptor that the AsyncFd takes
        // ownership of; an OwnedFd always reports the same raw fd and closes it
        // only when dropped, after the AsyncFd has deregistered it.
        let fd = unsafe { AsyncFd::register(owned) }?;
        Ok(Some(Pipe { fd }))
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let result = guard.try_io(|inner| {
                // SAFETY: `unfilled` is a valid, initialised, writable buffer of
                // the given length, and the descriptor is open while `inner` lives.
                let n = unsafe {
                    libc::read(
                        inner.as_raw_fd(),
                        unfilled.as_mut_ptr().cast(),
                        unfilled.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let result = guard.try_io(|inner| {
                // SAFETY: `data` is a valid readable buffer of the given length,
                // and the descriptor is open while `inner` lives.
                let n = unsafe { libc::write(inner.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Pipe writes are unbuffered at this level.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_pipe_pair_carries_bytes_both_ways() {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }).expect("pipe");
        let mut reader = Pipe::from_stdio(fds[0]).expect("dup").expect("is a pipe");
        let mut writer = Pipe::from_stdio(fds[1]).expect("dup").expect("is a pipe");
        // SAFETY: the originals were duplicated above and are closed exactly once here.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let big = vec![42u8; 200_000]; // larger than a pipe's buffer: exercises EAGAIN
        let send = tokio::spawn(async move {
            writer.write_all(&big).await.expect("write");
        });
        let mut got = vec![0u8; 200_000];
        reader.read_exact(&mut got).await.expect("read");
        send.await.expect("join");
        assert!(got.iter().all(|b| *b == 42));
        let mut rest = Vec::new();
        reader
            .read_to_end(&mut rest)
            .await
            .expect("eof after the writer is gone");
        assert!(rest.is_empty());
    }

    #[test]
    fn a_regular_file_is_not_a_pipe() {
        let file = std::fs::File::open("/proc/self/stat").expect("open");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let _guard = rt.enter();
        assert!(Pipe::from_stdio(file.as_raw_fd()).expect("fstat").is_none());
    }
}
