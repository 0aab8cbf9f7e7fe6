"""nas.fsutil: atomic files and folders, the one-search-per-folder lock, bounded reads, dangerous outputs."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nas.errors import ConfigError, NasError, StudyError
from nas.fsutil import (
    StudyLock,
    atomic_folder,
    atomic_write_bytes,
    atomic_write_text,
    dangerous_out,
    foreign_files,
    lock_held,
    read_regular_file,
    remove_stale_temps,
)

ROOT = Path(__file__).resolve().parents[2]


# --- atomic writes -------------------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "report.html"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new ü")
    atomic_write_bytes(tmp_path / "x.png", b"\x89PNG")
    assert p.read_text(encoding="utf-8") == "new ü"
    assert sorted(os.listdir(tmp_path)) == ["report.html", "x.png"]
    assert (p.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_write_failure_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    p = tmp_path / "trials.csv"
    atomic_write_text(p, "old")

    def boom(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    monkeypatch.undo()
    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")  # fails inside the write itself
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["trials.csv"]


# --- the study lock ------------------------------------------------------------------------------

_HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from nas.fsutil import StudyLock
    lock = StudyLock({folder!r})
    print("locked", flush=True)
    time.sleep(60)
""")


def test_lock_blocks_a_second_holder_and_is_freed_by_sigkill(tmp_path):
    folder = tmp_path / "results_x"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER.format(root=str(ROOT), folder=str(folder))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StudyError) as e:
            StudyLock(folder)
        msg = str(e.value)
        assert msg == (
            f"{folder} is in use by another `nas search` (pid {proc.pid}); "
            "wait for it to finish or choose another --out"
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    with StudyLock(folder) as lock:  # the OS dropped the dead holder's lock
        assert lock.held
        assert (folder / ".lock").read_text().strip() == str(os.getpid())
    assert not lock.held


def test_lock_in_process_release_and_reacquire(tmp_path):
    lock = StudyLock(tmp_path)
    with pytest.raises(StudyError, match=f"pid {os.getpid()}"):
        StudyLock(tmp_path)  # flock is per open file, so even this process is refused
    lock.release()
    lock.release()  # idempotent
    StudyLock(tmp_path).release()


def test_lock_held_sees_a_holder_without_taking_the_lock(tmp_path):
    assert not lock_held(tmp_path)  # no .lock file yet
    with StudyLock(tmp_path):
        assert lock_held(tmp_path)
    assert not lock_held(tmp_path) and (tmp_path / ".lock").exists()


# --- stale temps and atomic folders ---------------------------------------------------------------


def test_remove_stale_temps_removes_only_the_temps_of_that_file(tmp_path):
    p = tmp_path / "w[1].pt"  # glob characters in the name are matched literally
    atomic_write_bytes(p, b"x")
    for name in (".w[1].pt.abc.tmp", ".w[1].pt.def.tmp", ".other.pt.abc.tmp", "w[1].pt.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_temps(p) == 2
    assert sorted(os.listdir(tmp_path)) == [".other.pt.abc.tmp", "w[1].pt", "w[1].pt.tmp"]


def test_atomic_folder_replaces_the_old_folder_whole(tmp_path):
    out = tmp_path / "export"
    with atomic_folder(out) as staging:
        (staging / "a.txt").write_text("1")
    with atomic_folder(out) as staging:
        assert not (staging / "a.txt").exists()  # a fresh folder, not the old one
        (staging / "b.txt").write_text("2")
        assert sorted(os.listdir(out)) == ["a.txt"]  # readers see the old folder until the rename
    assert sorted(os.listdir(out)) == ["b.txt"] and sorted(os.listdir(tmp_path)) == ["export"]


def test_atomic_folder_keeps_the_old_folder_on_an_error_and_cleans_leftovers(tmp_path):
    out = tmp_path / "export"
    with atomic_folder(out) as staging:
        (staging / "a.txt").write_text("1")
    (tmp_path / ".export.killed.part").mkdir()  # what a kill -9 leaves
    with pytest.raises(KeyboardInterrupt), atomic_folder(out) as staging:
        (staging / "half.txt").write_text("x")
        raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["export"] and os.listdir(out) == ["a.txt"]


def test_atomic_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NasError, match="cannot create the folder") as e:
        with atomic_folder(tmp_path / "file" / "out"):
            pass
    assert "\n" not in str(e.value)


def test_foreign_files(tmp_path):
    assert foreign_files(tmp_path / "absent", {"a"}) == []
    for name in ("model.py", "notes.txt", "b"):
        (tmp_path / name).write_text("")
    assert foreign_files(tmp_path, {"model.py"}) == ["b", "notes.txt"]


# --- bounded reads --------------------------------------------------------------------------------


def test_read_regular_file_reads_up_to_its_limit(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_bytes(b"x" * 10)
    assert read_regular_file(p, max_bytes=10, what="space") == b"x" * 10
    with pytest.raises(StudyError, match="10 bytes, above the 9-byte limit for a space file"):
        read_regular_file(p, max_bytes=9, what="space")
    with pytest.raises(ConfigError, match="no such file"):
        read_regular_file(tmp_path / "nope", max_bytes=9, what="space", error=ConfigError)


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_read_regular_file_refuses_what_never_ends(tmp_path, kind):
    if kind == "folder":
        path, needle = tmp_path, "a folder"
    elif kind == "fifo":
        path, needle = tmp_path / "pipe", "not a regular file"
        os.mkfifo(path)  # nobody writes: a blocking open would hang here
    else:
        path, needle = Path("/dev/zero"), "not a regular file"
    with pytest.raises(ConfigError, match=needle):
        read_regular_file(path, max_bytes=100, what="config", error=ConfigError)


# --- dangerous outputs ----------------------------------------------------------------------------


def test_dangerous_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert dangerous_out("/") == "that is the file-system root"
    assert dangerous_out(Path.home()) == "that is the home folder"
    assert dangerous_out("~") == "that is the home folder"
    for p in (".", tmp_path, tmp_path.parent, "sub/.."):
        assert dangerous_out(p) == "that is the current folder or one above it", p
    for p in ("sub", "results/x", tmp_path / "new"):
        assert dangerous_out(p) is None, p
