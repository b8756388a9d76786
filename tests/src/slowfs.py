#!/usr/bin/env python3
"""slowfs: a FUSE passthrough filesystem with a slow write(2), a stand-in for a slow SD card.

It mirrors BACKING at MOUNTPOINT and sleeps --write-delay-ms in every write() (and
--fsync-delay-ms in every fsync()), so a process writing a file under MOUNTPOINT blocks in
write(2) as it would on a slow card. Writes are served one at a time (a lock around the sleep and
the write): a card has one queue, so two writers wait for each other. Everything else (getattr,
readdir, open, create, read, truncate, rename, unlink, mkdir, rmdir, chmod, chown, utimens,
statfs) passes straight through to BACKING, so log rotation (renames, unlinks) and the modes the
runtime asks for (directories 0750, files 0640) behave as on a real filesystem.

It owns nothing but the mount: the files live in BACKING and stay there after unmounting. It
never caches writes (no writeback cache), so every write(2) reaches it and pays the delay.

Needs fusepy (`pip install fusepy`) and libfuse 2 (Debian `libfuse2`); `fusermount -u`
(Debian `fuse3` or `fuse`) unmounts it. Used by `eg-log-bench`; by hand:

    python3 tests/src/slowfs.py BACKING MOUNTPOINT --write-delay-ms 5 [--background]
    fusermount -u MOUNTPOINT
"""

import argparse
import errno
import os
import sys
import threading
import time

from fuse import FUSE, FuseOSError, Operations


class SlowFs(Operations):
    """Passthrough to `backing`, with `write_delay` seconds per write and `fsync_delay` per fsync."""

    use_ns = True  # utimens gets nanoseconds (fusepy 3 warns otherwise)

    def __init__(self, backing, write_delay, fsync_delay):
        self.backing = os.path.realpath(backing)
        self.write_delay = write_delay
        self.fsync_delay = fsync_delay
        self.disk = threading.Lock()  # one write at a time, as on a card

    def _full(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def __call__(self, op, *args):
        # Every OSError becomes the errno the caller sees (ENOENT for a missing file, ...).
        try:
            return super().__call__(op, *args)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO) from e

    # Metadata and directories: straight through.
    def access(self, path, mode):
        if not os.access(self._full(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
                "st_atime", "st_mtime", "st_ctime")
        attrs = {k: getattr(st, k) for k in keys}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            attrs[k] = getattr(st, k + "_ns")
        return attrs

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        os.rmdir(self._full(path))

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self._full(path), uid, gid)

    def rename(self, old, new):
        os.rename(self._full(old), self._full(new))

    def unlink(self, path):
        os.unlink(self._full(path))

    def truncate(self, path, length, fh=None):
        if fh is None:
            os.truncate(self._full(path), length)
        else:
            os.ftruncate(fh, length)

    def utimens(self, path, times=None):
        if times is None:
            os.utime(self._full(path))
        else:
            os.utime(self._full(path), ns=times)

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    # Files: the backing file's descriptor is the FUSE file handle.
    def open(self, path, flags):
        return os.open(self._full(path), flags)

    def create(self, path, mode, fi=None):
        # The kernel has applied the caller's umask to `mode`; main() clears ours.
        return os.open(self._full(path), os.O_RDWR | os.O_CREAT, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        with self.disk:
            time.sleep(self.write_delay)
            # An O_APPEND descriptor appends whatever the offset; others write at it.
            return os.pwrite(fh, data, offset)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        with self.disk:
            time.sleep(self.fsync_delay)
            if datasync:
                os.fdatasync(fh)
            else:
                os.fsync(fh)

    def release(self, path, fh):
        os.close(fh)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backing", help="directory whose files the mount shows")
    parser.add_argument("mountpoint", help="empty directory to mount on")
    parser.add_argument("--write-delay-ms", type=float, default=5.0,
                        help="sleep in every write() (default 5)")
    parser.add_argument("--fsync-delay-ms", type=float, default=0.0,
                        help="sleep in every fsync() (default 0)")
    parser.add_argument("--background", action="store_true",
                        help="detach once mounted (default: stay in the foreground)")
    parser.add_argument("--allow-other", action="store_true",
                        help="let users other than the mounting one in (-o allow_other)")
    args = parser.parse_args()
    if not os.path.isdir(args.backing):
        sys.exit(f"slowfs: {args.backing}: not a directory")
    os.umask(0)
    fs = SlowFs(args.backing, args.write_delay_ms / 1000.0, args.fsync_delay_ms / 1000.0)
    FUSE(fs, args.mountpoint, foreground=not args.background, nothreads=False,
         allow_other=args.allow_other, fsname="slowfs")


if __name__ == "__main__":
    main()
