"""File-system helpers: atomic writes and the one-search-per-folder lock. Imports nothing of ours but errors."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
from pathlib import Path

from nas.errors import NasError, StudyError


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
    fsync_dir(path.parent)
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


def fsync_dir(folder: Path) -> None:
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
            raise StudyError(
                f"{self.folder}: cannot create the study folder or its lock file "
                f"({e.strerror or e}); choose a writable --out"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StudyError(
                f"{self.folder} is in use by another `nas search` (pid {holder}); "
                "wait for it to finish or choose another --out"
            ) from None
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


def read_regular_file(path: str | os.PathLike, *, max_bytes: int, what: str, error=StudyError) -> bytes:
    """The bytes of `path`, refusing anything but a regular file of at most `max_bytes` before reading.

    /dev/zero, a FIFO or a socket would never end (or block the open): the file is opened non-blocking and
    checked with fstat on the open descriptor (no race with a rename in between). `error` is the NasError
    subclass raised, its message naming `what` and the file.
    """
    import stat

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise error(f"{path}: {kind}; pass a {what} file")
        if info.st_size > max_bytes:
            raise error(
                f"{path}: {info.st_size:,} bytes, above the {max_bytes:,}-byte limit for a {what} file; "
                "is it the right file?"
            )
        chunks, total = [], 0
        while True:  # a file that grows while we read is cut at the limit too
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise error(f"{path}: above the {max_bytes:,}-byte limit for a {what} file; is it the right file?")
        return b"".join(chunks)
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None
    finally:
        os.close(fd)


def dangerous_out(path: str | os.PathLike) -> str | None:
    """Why `path` must not become an output folder (a sentence), or None.

    The file-system root, the home folder, and the current folder or any folder above it hold other
    people's files: a study or an export written there would mix with them (and a later clean-up of the
    output folder would delete them)."""
    p = Path(path).expanduser()
    try:
        resolved = p.resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError):  # a symlink loop: let the writer report it
        return None
    if resolved == Path(resolved.anchor):
        return "that is the file-system root"
    home = Path.home()
    with contextlib.suppress(OSError, RuntimeError):
        home = home.resolve()
    if resolved == home:
        return "that is the home folder"
    if resolved == cwd or resolved in cwd.parents:
        return "that is the current folder or one above it"
    return None


def lock_held(folder: str | os.PathLike) -> bool:
    """True while a `nas search` holds the StudyLock of `folder` (checked without taking it)."""
    try:
        fd = os.open(Path(folder) / ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def foreign_files(folder: str | os.PathLike, ours) -> list[str]:
    """Names in `folder` (if it exists) that are not in `ours`, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    try:
        return sorted(p.name for p in folder.iterdir() if p.name not in ours)
    except OSError:
        return []


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike):
    """Yield a fresh hidden folder beside `out`; on success it is renamed to `out` (an old `out` is moved
    away first and deleted), on any error or interrupt it is deleted. Readers see the old folder or the
    whole new one; a kill -9 leaves at most a hidden `.NAME.*.part` folder, removed by the next call."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in out.parent.glob(f".{glob.escape(out.name)}.*.part"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part"))
    except OSError as e:
        raise NasError(
            f"--out {out}: cannot create the folder or write beside it ({e.strerror or e}); choose another --out"
        ) from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part"))
            os.rename(out, old / "previous")
            os.rename(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, out)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise NasError(f"--out {out}: cannot write the folder ({e.strerror or e}); choose another --out") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(out.parent)
