"""File-system helpers: atomic writes and the one-search-per-folder lock. Imports nothing of ours but errors."""
from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import tempfile
from pathlib import Path

from nas.errors import StudyError


def _umask() -> int:
    # os.umask can only be read by setting it; put it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that readers see either the old file or the whole new one.

    The temp file lives in the same folder because os.replace is only atomic within one file system.

    >>> p = atomic_write_bytes("/tmp/_lightnas_doctest.bin", b"abc")
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        # mkstemp makes 0600 files; give report files the permissions an ordinary open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temps(path: str | os.PathLike) -> int:
    """Delete the temp files atomic_write_bytes left for `path` when its writer was killed between write
    and rename (kill -9 skips the clean-up); return how many. Call it only where no other writer of `path`
    can be running, or its temp file would vanish under it."""
    path = Path(path)
    n = 0
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            n += 1
    return n


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """atomic_write_bytes for text (UTF-8 unless told otherwise)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some file systems refuse fsync on folders, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class StudyLock:
    """Exclusive lock on a study folder, so two `nas search` runs never write the same study.

    flock locks belong to the open file, so the OS drops them when the holder exits, even on kill -9;
    a stale `.lock` file left behind is therefore harmless.

    >>> with StudyLock("/tmp/_lightnas_doctest_study"):
    ...     pass
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self._fd: int | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # under a file, on a read-only file system, in /proc ...
            raise StudyError(f"{self.folder}: cannot create the study folder or its lock file "
                             f"({e.strerror or e}); choose a writable --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StudyError(
                f"{self.folder} is in use by another `nas search` (pid {holder}); "
                "wait for it to finish or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). The `.lock` file stays: deleting it could race a new holder."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.release()


def _read_pid(fd: int) -> str:
    # The holder writes its pid just after taking the lock; a reader can land in between.
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode().strip()
        if text:
            return str(int(text))
    return "unknown"
