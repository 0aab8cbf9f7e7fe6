"""A damaged or tampered study.db: every command says so in one line, and export writes nothing."""

from __future__ import annotations

import random
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from nas.storage import Storage
from fault_tools import assert_our_error, call, fake_training, _search_argv

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, RLIMIT_AS and process groups as Linux has them"
)


def _damage(folder: Path, kind: str) -> None:
    db = folder / "study.db"
    if kind == "truncated":
        db.write_bytes(db.read_bytes()[:5000])
    elif kind == "not_sqlite":
        db.write_bytes(random.Random(0).randbytes(20_000))
    else:
        sql = {
            "config_not_json": "UPDATE trials SET config = '{not json' WHERE id = 2",
            "config_not_a_mapping": "UPDATE trials SET config = '5' WHERE id = 2",
            "metrics_not_a_mapping": "UPDATE trials SET metrics = '[1]' WHERE id = 1",
            "meta_not_json": "UPDATE meta SET value = '[' WHERE key = 'space'",
        }[kind]
        conn = sqlite3.connect(db)
        conn.execute(sql)
        conn.commit()
        conn.close()


@pytest.mark.parametrize(
    "kind",
    ["truncated", "not_sqlite", "config_not_json", "config_not_a_mapping", "metrics_not_a_mapping", "meta_not_json"],
)
def test_a_damaged_database_is_one_line_for_every_command(tmp_path, small_study, tiny_space, kind):
    """A study.db edited by hand or cut short: report, export and resume each say so in one line
    (before the Storage fixes the JSON ones raised JSONDecodeError / AttributeError)."""
    folder = tmp_path / "study"
    shutil.copytree(small_study, folder, ignore=shutil.ignore_patterns("study.db-*"))
    _damage(folder, kind)
    for argv in (
        ["report", folder, "--no-profile", "--no-files"],
        ["export", folder, "--no-retrain", "--out", tmp_path / "exported"],
        _search_argv(tiny_space, folder, 3, "--resume"),
    ):
        with fake_training() as calls:
            code, _, err = call(argv)
        assert_our_error(code, err, str(folder))
        assert not calls and not (tmp_path / "exported").exists()


def test_export_of_a_tampered_study_writes_nothing(tmp_path, small_study):
    """The stored config of every trial now names a block that is Python code."""
    folder, out, marker = tmp_path / "study", tmp_path / "exported", tmp_path / "PWNED"
    shutil.copytree(small_study, folder)
    with Storage(folder / "study.db") as st:
        for t in st.trials():
            t.config["stages"][0]["block"] = f"Conv'}}]\n__import__('os').system('touch {marker}')\n#"
            st.update_trial(t)
    for extra in (["--trial", "1", "--no-retrain"], []):  # a chosen trial; the best one, retrained
        code, _, err = call(["export", folder, "--out", out, *extra])
        assert_our_error(code, err, "unknown block")
        assert not out.exists() and not marker.exists()
