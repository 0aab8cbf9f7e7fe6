"""Results go to folders that cannot be written (even by root): one line, nothing half-made."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from fault_tools import assert_our_error, call, fake_training, _search_argv, snapshot, temp_leftovers, trials_of

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, RLIMIT_AS and process groups as Linux has them"
)


def _refuses_writes(folder: Path) -> bool:
    """True when creating an entry in `folder` fails even for root (pseudo file systems do that)."""
    probe = folder / ".lightnas_probe"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError:
        return True
    probe.unlink()
    return False


def _unwritable(kind: str, tmp_path: Path) -> Path:
    """Folders no one can write, root included (tests run as root, so chmod proves nothing):
    under_a_file  a path below a regular file: mkdir fails with ENOTDIR on any POSIX system
    proc          /proc exists but procfs refuses to create entries (ENOENT)
    sysfs         a new folder in /sys/kernel: sysfs refuses mkdir (EPERM)"""
    if kind == "under_a_file":
        (tmp_path / "a_file").write_text("not a folder")
        return tmp_path / "a_file" / "study"
    folder = {"proc": Path("/proc"), "sysfs": Path("/sys/kernel")}[kind]
    if not folder.is_dir() or not _refuses_writes(folder):
        pytest.skip(f"{folder} is missing or writable here")
    return folder if kind == "proc" else folder / "lightnas_study"


@pytest.mark.parametrize("kind", ["under_a_file", "proc", "sysfs"])
def test_search_into_an_unwritable_folder_is_one_line(tmp_path, tiny_space, kind):
    target = _unwritable(kind, tmp_path)
    with fake_training() as calls:  # nothing may run; were it to, it would not train
        code, _, err = call(_search_argv(tiny_space, target, 1))  # was a NotADirectory/Permission traceback
    assert_our_error(code, err, str(target), "choose a writable --out")
    assert not calls


@pytest.mark.parametrize("kind", ["under_a_file", "proc", "sysfs"])
def test_export_into_an_unwritable_folder_is_one_line(tmp_path, small_study, kind):
    target = _unwritable(kind, tmp_path)
    if kind == "sysfs":
        target = target.parent  # an existing folder that cannot be written: the first write fails
    code, _, err = call(["export", small_study, "--trial", "1", "--no-retrain", "--out", target])
    assert_our_error(code, err, str(target), "choose another --out")  # was PermissionError for /sys/kernel


def test_report_whose_files_cannot_be_written_is_one_line(tmp_path, small_study):
    folder = tmp_path / "study"
    shutil.copytree(small_study, folder)
    (folder / "report.html").mkdir()  # a folder where the report goes: the rename fails (EISDIR), root or not
    code, out, err = call(["report", folder, "--no-profile"])
    assert_our_error(code, err, "cannot write the report")
    assert not temp_leftovers(folder), temp_leftovers(folder)


def test_a_trial_whose_weights_cannot_be_written_fails_alone(tmp_path, small_study, tiny_space):
    """`trials` is a file: each new trial trains, cannot save, and is recorded failed; the search goes on."""
    folder = tmp_path / "study"
    shutil.copytree(small_study, folder)
    kept = snapshot(folder)
    shutil.rmtree(folder / "trials")
    (folder / "trials").write_text("in the way")
    code, out, err = call(_search_argv(tiny_space, folder, 3, "--resume"))
    assert code == 0, err
    assert {i: v for i, v in snapshot(folder).items() if i in kept} == kept
    new = [t for t in trials_of(folder) if t.id not in kept]
    assert len(new) == 1 and new[0].status == "failed" and "trials" in new[0].error, new
    assert "\n" not in new[0].error
