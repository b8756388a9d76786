//! The serial port itself: opening it with the connector's options, and
//! reading and writing with deadlines. It knows nothing of topics or JSON,
//! and never retries: the worker decides what a failure means.
//!
//! **What tokio-serial cannot say, and what is done instead.** tokio-serial
//! (serialport 4) has parity None/Odd/Even and flow control
//! None/Software/Hardware as one choice. Mark and space parity
//! (`Parity` `M`/`S`) and RTS/CTS *together with* XON/XOFF are set here
//! directly in the port's termios after opening: `PARENB|CMSPAR` (plus
//! `PARODD` for mark), and `CRTSCTS` alongside `IXON|IXOFF`. The termios2
//! ioctls are used, as serialport uses them on Linux, so the baud rate
//! (which may be a non-standard one such as 14400, set with `BOTHER`)
//! survives the change. The result is read back, and flags the driver
//! dropped are logged at WARN: a pseudo-terminal (socat, the tests) always
//! clears `PARENB`, as it does for even and odd parity too.
//!
//! **Reads** follow pyserial's `read(n)` with a timeout: they return when
//! `n` bytes have arrived or when the deadline passes, with what arrived.
//! **Writes** hand every byte to the kernel's tty driver before a deadline
//! (flow control can hold a line forever); they do not wait for the bytes
//! to leave the wire (`tcdrain` would block the connector's only thread).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_serial::{DataBits, FlowControl, SerialPortBuilderExt, SerialStream, StopBits};

use crate::settings::{Parity, PortOptions};

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open serial port {path}: {source}")]
    Open {
        path: String,
        source: tokio_serial::Error,
    },
    #[error("cannot set {what} on serial port {path}: {source}")]
    Termios {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
}

/// Opens `path` with `options`: 8 data bits, 1 stop bit. The warning says
/// which of the termios flags set beyond tokio-serial the driver dropped.
pub fn open(
    path: &Path,
    options: &PortOptions,
) -> Result<(SerialStream, Option<String>), OpenError> {
    let name = path.display().to_string();
    let parity = match options.parity {
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
        // Mark and space are added below, over "no parity".
        Parity::None | Parity::Mark | Parity::Space => tokio_serial::Parity::None,
    };
    let flow = match (options.rts_cts, options.xon_xoff) {
        (true, false) => FlowControl::Hardware,
        // Both: software here, CRTSCTS added below.
        (_, true) => FlowControl::Software,
        (false, false) => FlowControl::None,
    };
    let stream = tokio_serial::new(&name, options.baud_rate)
        .data_bits(DataBits::Eight)
        .stop_bits(StopBits::One)
        .parity(parity)
        .flow_control(flow)
        // Not exclusive, as Greengrass's connector (pyserial) opened it.
        // serialport's default sets TIOCEXCL, which stays on the tty after
        // a SIGKILLed connector as long as anyone else holds the line (the
        // peer of a pty pair, a second opener), and which only a process
        // with CAP_SYS_ADMIN may override: the restarted connector, jailed
        // without capabilities, then got "Device or resource busy" for good.
        .exclusive(false)
        .open_native_async()
        .map_err(|source| OpenError::Open {
            path: name.clone(),
            source,
        })?;
    let mut warning = None;
    if let Some(what) = extra_termios(options) {
        let dropped = set_extra_termios(&stream, options).map_err(|source| OpenError::Termios {
            path: name.clone(),
            what,
            source,
        })?;
        if !dropped.is_empty() {
            warning = Some(format!(
                "serial port {name}: the driver did not keep {} for {what} (pseudo-terminals have no parity bit; \
                 other drivers may lack CMSPAR)",
                dropped.join(", ")
            ));
        }
    }
    Ok((stream, warning))
}

/// What [`open`] sets beyond tokio-serial, for messages; `None` if nothing.
fn extra_termios(options: &PortOptions) -> Option<&'static str> {
    match (options.parity, options.rts_cts && options.xon_xoff) {
        (Parity::Mark, _) => Some("mark parity"),
        (Parity::Space, _) => Some("space parity"),
        (_, true) => Some("RTS/CTS with XON/XOFF flow control"),
        _ => None,
    }
}

/// The termios flags (`c_cflag`, `c_iflag`) [`open`] sets beyond
/// tokio-serial, and those it clears.
fn extra_flags(
    options: &PortOptions,
) -> (
    (libc::tcflag_t, libc::tcflag_t),
    (libc::tcflag_t, libc::tcflag_t),
) {
    let (mut set_c, mut set_i, mut clear_c, mut clear_i) = (0, 0, 0, 0);
    match options.parity {
        Parity::Mark => {
            set_c |= libc::PARENB | libc::CMSPAR | libc::PARODD;
            set_i |= libc::INPCK;
            clear_i |= libc::IGNPAR;
        }
        Parity::Space => {
            set_c |= libc::PARENB | libc::CMSPAR;
            clear_c |= libc::PARODD;
            set_i |= libc::INPCK;
            clear_i |= libc::IGNPAR;
        }
        Parity::None | Parity::Even | Parity::Odd => {}
    }
    if options.rts_cts && options.xon_xoff {
        set_c |= libc::CRTSCTS;
        set_i |= libc::IXON | libc::IXOFF;
    }
    ((set_c, set_i), (clear_c, clear_i))
}

/// Sets the extra flags; returns the names of those the driver did not
/// keep (a pty clears `PARENB` whatever is asked: it has no parity).
fn set_extra_termios(
    stream: &SerialStream,
    options: &PortOptions,
) -> std::io::Result<Vec<&'static str>> {
    let fd = stream.as_raw_fd();
    let ((set_c, set_i), (clear_c, clear_i)) = extra_flags(options);
    let mut t = get_termios2(fd)?;
    t.c_cflag = (t.c_cflag | set_c) & !clear_c;
    t.c_iflag = (t.c_iflag | set_i) & !clear_i;
    // SAFETY: `fd` is the open tty owned by `stream`, alive for this call;
    // TCSETS2 reads one `termios2` from the pointer, which points to an
    // initialised value on our stack.
    let rc = unsafe { libc::ioctl(fd, libc::TCSETS2, &t as *const libc::termios2) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let back = get_termios2(fd)?;
    let c_flags = [
        ("PARENB", libc::PARENB),
        ("PARODD", libc::PARODD),
        ("CMSPAR", libc::CMSPAR),
        ("CRTSCTS", libc::CRTSCTS),
    ];
    let i_flags = [
        ("INPCK", libc::INPCK),
        ("IGNPAR", libc::IGNPAR),
        ("IXON", libc::IXON),
        ("IXOFF", libc::IXOFF),
    ];
    let mut dropped = Vec::new();
    for (flags, set, clear, actual) in [
        (&c_flags, set_c, clear_c, back.c_cflag),
        (&i_flags, set_i, clear_i, back.c_iflag),
    ] {
        for (name, bit) in flags.iter() {
            let wrong =
                (set & bit != 0 && actual & bit == 0) || (clear & bit != 0 && actual & bit != 0);
            if wrong {
                dropped.push(*name);
            }
        }
    }
    Ok(dropped)
}

/// The port's termios (termios2: with the real baud rate).
pub fn get_termios2(fd: std::os::fd::RawFd) -> std::io::Result<libc::termios2> {
    // SAFETY: termios2 is plain integers and arrays of them; all-zero is a
    // valid value that TCGETS2 then overwrites.
    let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor of the caller's; TCGETS2 writes
    // one `termios2` through the pointer, which points to ours.
    let rc = unsafe { libc::ioctl(fd, libc::TCGETS2, &mut t as *mut libc::termios2) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(t)
}

/// How a read ended.
#[derive(Debug)]
pub enum ReadEnd {
    /// All the bytes asked for arrived.
    Complete,
    /// The deadline passed first.
    TimedOut,
    /// The port failed (or reported end of file, which a serial port only
    /// does once it is gone).
    Failed(std::io::Error),
}

/// Reads until `length` bytes have arrived or `timeout` passes, returning
/// what arrived either way.
pub async fn read_up_to<S: AsyncRead + Unpin>(
    port: &mut S,
    length: usize,
    timeout: Duration,
) -> (Vec<u8>, ReadEnd) {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; length];
    let mut got = 0;
    while got < length {
        match tokio::time::timeout_at(deadline, port.read(&mut buf[got..])).await {
            Ok(Ok(0)) => {
                buf.truncate(got);
                let eof = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "end of file: the port is gone",
                );
                return (buf, ReadEnd::Failed(eof));
            }
            Ok(Ok(n)) => got += n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => {
                buf.truncate(got);
                return (buf, ReadEnd::Failed(e));
            }
            Err(_elapsed) => {
                buf.truncate(got);
                return (buf, ReadEnd::TimedOut);
            }
        }
    }
    (buf, ReadEnd::Complete)
}

/// Why a write did not complete.
#[derive(Debug)]
pub enum WriteFailure {
    TimedOut {
        written: usize,
    },
    Failed {
        written: usize,
        error: std::io::Error,
    },
}

/// Writes all of `data` before `timeout` passes.
pub async fn write_within<S: AsyncWrite + Unpin>(
    port: &mut S,
    data: &[u8],
    timeout: Duration,
) -> Result<(), WriteFailure> {
    let deadline = Instant::now() + timeout;
    let mut written = 0;
    while written < data.len() {
        match tokio::time::timeout_at(deadline, port.write(&data[written..])).await {
            Ok(Ok(0)) => {
                let error = std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the port accepted no bytes",
                );
                return Err(WriteFailure::Failed { written, error });
            }
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(error)) => return Err(WriteFailure::Failed { written, error }),
            Err(_elapsed) => return Err(WriteFailure::TimedOut { written }),
        }
    }
    Ok(())
}

/// How long a write of `len` bytes may take: the `Timeout` plus the time the
/// bytes need on the wire at `baud_rate` (11 bit times per byte, a start,
/// 8 data, a parity and a stop bit), since a 128000-byte write at 9600 baud
/// takes over two minutes however healthy the line.
pub fn write_timeout(len: usize, baud_rate: u32, timeout: Duration) -> Duration {
    let bits = (len as u64).saturating_mul(11);
    let wire_ms = bits.saturating_mul(1000) / u64::from(baud_rate.max(1));
    timeout + Duration::from_millis(wire_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(parity: Parity, rts_cts: bool, xon_xoff: bool) -> PortOptions {
        PortOptions {
            baud_rate: 9600,
            parity,
            rts_cts,
            xon_xoff,
        }
    }

    #[tokio::test]
    async fn reads_stop_at_the_length_or_the_deadline_with_what_arrived() {
        let (mut a, mut b) = SerialStream::pair().expect("pty pair");
        write_within(&mut a, b"hello world", Duration::from_secs(1))
            .await
            .expect("write");
        let (data, end) = read_up_to(&mut b, 5, Duration::from_secs(2)).await;
        assert_eq!(data, b"hello");
        assert!(matches!(end, ReadEnd::Complete), "{end:?}");

        let started = std::time::Instant::now();
        let (data, end) = read_up_to(&mut b, 100, Duration::from_millis(300)).await;
        assert_eq!(data, b" world");
        assert!(matches!(end, ReadEnd::TimedOut), "{end:?}");
        assert!(started.elapsed() >= Duration::from_millis(300));

        let (data, end) = read_up_to(&mut b, 1, Duration::from_millis(100)).await;
        assert!(data.is_empty());
        assert!(matches!(end, ReadEnd::TimedOut), "{end:?}");

        // The other end closed: the read fails (EIO on Linux ptys).
        drop(a);
        let (data, end) = read_up_to(&mut b, 1, Duration::from_secs(2)).await;
        assert!(data.is_empty());
        assert!(matches!(end, ReadEnd::Failed(_)), "{end:?}");
    }

    #[tokio::test]
    async fn mark_space_and_both_flow_controls_reach_the_termios() {
        for (opts, set, clear) in [
            (
                options(Parity::Mark, false, false),
                libc::PARENB | libc::CMSPAR | libc::PARODD,
                0,
            ),
            (
                options(Parity::Space, false, false),
                libc::PARENB | libc::CMSPAR,
                libc::PARODD,
            ),
            (options(Parity::None, true, true), libc::CRTSCTS, 0),
        ] {
            let (_a, b) = SerialStream::pair().expect("pty pair");
            let dropped = set_extra_termios(&b, &opts).expect("set");
            let t = get_termios2(b.as_raw_fd()).expect("get");
            // A pty clears PARENB (and says so); the rest stays.
            let parenb = if set & libc::PARENB != 0 {
                assert_eq!(dropped, ["PARENB"], "{opts:?}");
                libc::PARENB
            } else {
                assert!(dropped.is_empty(), "{opts:?}: {dropped:?}");
                0
            };
            assert_eq!(t.c_cflag & (set & !parenb), set & !parenb, "{opts:?}");
            assert_eq!(t.c_cflag & clear, 0, "{opts:?}");
            if opts.xon_xoff {
                assert_eq!(
                    t.c_iflag & (libc::IXON | libc::IXOFF),
                    libc::IXON | libc::IXOFF
                );
            }
        }
        assert_eq!(extra_termios(&options(Parity::Even, true, false)), None);
        assert_eq!(extra_termios(&options(Parity::Odd, false, true)), None);
    }

    #[test]
    fn write_deadlines_grow_with_the_wire_time() {
        let t = Duration::from_secs(2);
        assert_eq!(write_timeout(0, 9600, t), t);
        assert_eq!(
            write_timeout(128_000, 9600, t),
            t + Duration::from_millis(146_666)
        );
        assert_eq!(write_timeout(10, 0, t), t + Duration::from_millis(110_000));
    }

    #[test]
    fn opening_a_missing_port_names_it() {
        let e = open(
            Path::new("/dev/evergreen-no-such-port"),
            &options(Parity::None, false, false),
        )
        .expect_err("no such port");
        assert!(e.to_string().contains("/dev/evergreen-no-such-port"), "{e}");
    }
}
