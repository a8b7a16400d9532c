"""The disk spool: events as JSON lines in segment files, deleted only once the server took them.

    spool_dir/
      4711-9f3c2a1b/        one directory per live client (pid and a random tag)
        lock                flock()ed while the client lives: the kernel lets go when it dies
        00000001.jsonl      segments of whole lines, rolled at `segment_bytes`
        00000002.jsonl

A directory whose lock is free belongs to a client that is gone (it exited with events left, or was
killed): the next client on the same `spool_dir` adopts it and sends its segments first. A segment
is resent from its start after a crash, so a few already-delivered events may go twice; the server
drops them as duplicates (same messageId and timestamp). Each append is one `write()` of whole lines,
so a killed process never leaves half a line behind (short of a full disk, which the reader skips).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Spool", "SpoolBatch"]

_SUFFIX = ".jsonl"
_BODY_OVERHEAD = 64  # `{"batch":[`, `],"sentAt":"..."}` around the lines


@dataclass(frozen=True)
class SpoolBatch:
    path: Path
    end: int  # offset after the last line of the batch
    lines: list[bytes]


class Spool:
    """One writer thread calls `append`; one sender thread calls `next_batch` and `ack`."""

    def __init__(
        self, root: Path, *, max_bytes: int, segment_bytes: int = 1 << 20, fsync: bool = False
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        root.mkdir(parents=True, exist_ok=True)
        self.directory = root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.directory.mkdir()
        lock_fd = _lock(self.directory)
        if lock_fd is None:
            raise OSError(f"cannot lock {self.directory}")
        self._lock_fd: int = lock_fd
        self._mutex = threading.Lock()
        self._size = 0
        self._ready: deque[Path] = deque()  # sealed segments, oldest first
        self._adopted: dict[Path, int] = {}  # adopted directory -> its lock fd
        self._write_path: Path | None = None
        self._write_fd: int | None = None
        self._write_size = 0
        self._write_seq = 0
        self._read_path: Path | None = None
        self._read_fd: int | None = None
        self._offsets: dict[Path, int] = {}  # how far each segment has been delivered
        self._lengths: dict[Path, int] = {}  # bytes of whole lines in each segment

    @property
    def size(self) -> int:
        """Bytes spooled and not yet delivered (or skipped)."""
        return self._size

    # -- the writer's side -------------------------------------------------------------------

    def append(self, lines: list[bytes]) -> int:
        """Append whole lines in one write; returns how many fitted under `max_bytes` (the rest
        are refused: the oldest events are kept, the newest dropped). Raises OSError."""
        with self._mutex:
            room = self.max_bytes - self._size
        accepted = 0
        total = 0
        for line in lines:
            if total + len(line) + 1 > room:
                break
            total += len(line) + 1
            accepted += 1
        if not accepted:
            return 0
        if self._write_fd is None or self._write_size >= self._segment_bytes:
            self._roll()
        assert self._write_fd is not None
        data = memoryview(b"\n".join(lines[:accepted]) + b"\n")
        try:
            while data:
                data = data[os.write(self._write_fd, data) :]
            if self._fsync:
                os.fsync(self._write_fd)
        except OSError:
            # A partial write (a full disk) leaves a torn line: end the segment there, so the
            # torn bytes are its tail, which the reader skips, and never precede a good line.
            self._write_size = self._segment_bytes
            raise
        self._write_size += total
        with self._mutex:
            self._size += total
            path = self._write_path
            assert path is not None
            self._lengths[path] = self._lengths.get(path, 0) + total
        return accepted

    def _roll(self) -> None:
        self._write_seq += 1
        path = self.directory / f"{self._write_seq:08d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with self._mutex:
            if self._write_path is not None:
                self._ready.append(self._write_path)
            self._write_path = path
        if self._write_fd is not None:
            os.close(self._write_fd)
        self._write_fd = fd
        self._write_size = 0

    # -- the sender's side -------------------------------------------------------------------

    def next_batch(self, max_count: int, max_bytes: int) -> SpoolBatch | None:
        """The next lines to send, oldest first, from one segment; None when there are none."""
        while True:
            with self._mutex:
                path = self._ready[0] if self._ready else self._write_path
                sealed = path is not None and path != self._write_path
            if path is None:
                return None
            batch = self._read(path, max_count, max_bytes - _BODY_OVERHEAD)
            if batch is None:
                if not sealed:
                    return None
                self._finish(path)  # read to its end (a torn last line, if any, is skipped)
            elif not batch.lines:
                self.ack(batch)
            else:
                return batch

    def ack(self, batch: SpoolBatch) -> None:
        """The server took `batch`: move past it, and delete its segment once read through."""
        delivered = batch.end - self._offsets.get(batch.path, 0)
        self._offsets[batch.path] = batch.end
        with self._mutex:
            self._size -= delivered
            sealed = batch.path != self._write_path
        if sealed and self._read_fd is not None and batch.end >= os.fstat(self._read_fd).st_size:
            self._finish(batch.path)

    def _read(self, path: Path, max_count: int, max_bytes: int) -> SpoolBatch | None:
        if self._read_path != path:
            self._close_reader()
            try:
                self._read_fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            self._read_path = path
        assert self._read_fd is not None
        offset = self._offsets.get(path, 0)
        chunk = os.pread(self._read_fd, max_bytes, offset)
        last = chunk.rfind(b"\n")
        if last < 0:
            return None  # nothing complete yet
        lines: list[bytes] = []
        end = offset
        for line in chunk[: last + 1].split(b"\n")[:-1]:
            if len(lines) == max_count:
                break
            end += len(line) + 1
            if line:
                lines.append(line)
        return SpoolBatch(path, end, lines)

    def _close_reader(self) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd)
        self._read_fd = None
        self._read_path = None

    def _finish(self, path: Path) -> None:
        if self._read_path == path:
            self._close_reader()
        path.unlink(missing_ok=True)
        with self._mutex:
            undelivered = self._lengths.pop(path, 0) - self._offsets.pop(path, 0)
            self._size -= max(undelivered, 0)  # what was skipped (a torn tail) or never read
            if path in self._ready:
                self._ready.remove(path)
            pending_dirs = {p.parent for p in self._ready}
        for directory in [d for d in self._adopted if d not in pending_dirs]:
            _remove_directory(directory, self._adopted.pop(directory))

    # -- other clients' leftovers ----------------------------------------------------------------

    def adopt(self) -> int:
        """Take over the directories of clients that are gone; returns the segments found."""
        found = 0
        for directory in sorted(self.root.iterdir()):
            if directory == self.directory or directory in self._adopted or not directory.is_dir():
                continue
            fd = _lock(directory)
            if fd is None:
                continue
            segments = sorted(directory.glob(f"*{_SUFFIX}"))
            if not segments:
                _remove_directory(directory, fd)
                continue
            sizes = {segment: segment.stat().st_size for segment in segments}
            with self._mutex:
                self._adopted[directory] = fd
                self._size += sum(sizes.values())
                self._lengths.update(sizes)
                self._ready.extendleft(reversed(segments))  # older than anything of ours
            found += len(segments)
        return found

    # -- ending --------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the spool. Undelivered segments stay for the next client to adopt."""
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        with self._mutex:
            current, self._write_path = self._write_path, None
            if current is not None:
                self._ready.append(current)
        if current is not None and self._offsets.get(current, 0) >= _file_size(current):
            self._finish(current)
        self._close_reader()
        for fd in self._adopted.values():
            os.close(fd)  # what is left there is adopted again next time
        self._adopted.clear()
        if any(p.parent == self.directory for p in self._ready):
            os.close(self._lock_fd)
        else:
            _remove_directory(self.directory, self._lock_fd)

    def abandon(self) -> None:
        """In a forked child: drop the parent's file descriptors without touching its files or
        its locks (a flock belongs to the parent's open file, which outlives our copy)."""
        for fd in (self._write_fd, self._read_fd, self._lock_fd, *self._adopted.values()):
            if fd is not None:
                os.close(fd)
        self._write_fd = self._read_fd = None
        self._read_path = None
        self._adopted.clear()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _lock(directory: Path) -> int | None:
    """An exclusive flock on `directory/lock`, or None when a live client holds it."""
    try:
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_directory(directory: Path, lock_fd: int) -> None:
    for leftover in directory.iterdir():
        if leftover.name != "lock":
            return  # not ours to judge: keep it, lock released, for someone to adopt later
    try:
        (directory / "lock").unlink()
        directory.rmdir()
    except OSError:
        pass
    finally:
        os.close(lock_fd)
