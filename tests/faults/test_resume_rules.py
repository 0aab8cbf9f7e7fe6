"""--resume can never mix runs: every setting that defines a study (nas.defining.DEFINING) is recorded once,
and a resume that changes one is refused in one line naming the setting, both values and the way out;
the recorded settings and the finished trials stay as they were. Budgets, workers and --quiet may change.

Trials are the instant fake objective of fault_tools (no training)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from nas.defining import DEFINING_KEYS
from nas.storage import Storage
from fault_tools import FUZZ_SEARCH, _image_folder, _search_argv, assert_our_error, call, fake_training, snapshot


def _argv(space, out, *extra):
    return _search_argv(space, out, "2", *extra)


def _defining_meta(folder: Path) -> dict:
    with Storage(folder / "study.db", read_only=True) as st:
        return {k: v for k, v in st.meta().items() if k in DEFINING_KEYS}


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_space) -> Path:
    """A two-trial digits study (fake trials) with explicit limits and score."""
    out = tmp_path_factory.mktemp("resume") / "study"
    with fake_training(limit=10):
        code, _, err = call(
            _argv(tiny_space, out, "--seed", "3", "--max-macs", "1M", "--max-params", "50k", "--score", "mnas")
        )
    assert code == 0, err
    return out


def _copy(made: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    shutil.copytree(made, folder)
    return folder


CHANGES = {  # option -> (the changed value, the setting the error must name)
    "--seed": ("4", "seed"),
    "--max-macs": ("2M", "max macs"),
    "--max-params": ("40k", "max params"),
    "--score": ("acc", "score"),
    "--precision": ("fp32", "precision"),
}


@pytest.mark.parametrize("option", sorted(CHANGES))
def test_resume_with_a_changed_setting_is_refused(made, tmp_path, tiny_space, option):
    folder = _copy(made, tmp_path)
    before, meta = snapshot(folder), _defining_meta(folder)
    same = {"--seed": "3", "--max-macs": "1M", "--max-params": "50k", "--score": "mnas", "--precision": "auto"}
    same[option] = CHANGES[option][0]
    extra = [x for k, v in same.items() for x in (k, v)]
    with fake_training() as calls:
        code, _, err = call(_argv(tiny_space, folder, "--resume", "--trials", "3", *extra))
    line = assert_our_error(code, err, f"different {CHANGES[option][1]}", "another --out", "the study has")
    assert not calls, line
    assert snapshot(folder) == before and _defining_meta(folder) == meta


def test_resume_on_other_data_is_refused(made, tmp_path, tiny_space):
    """Was: a digits study resumed on an ImageFolder trained the new trials on the other data set."""
    folder = _copy(made, tmp_path)
    before, meta = snapshot(folder), _defining_meta(folder)
    data = _image_folder(tmp_path / "images", size=8)
    with fake_training() as calls:
        code, _, err = call(
            [
                "search",
                "--fidelity",
                "off",
                "--max-epochs",
                "2",
                "--dataset",
                "imagefolder",
                "--data-dir",
                data,
                "--space",
                tiny_space,
                "--trials",
                "3",
                "--out",
                folder,
                "--quiet",
                "--resume",
                "--seed",
                "3",
                "--max-macs",
                "1M",
                "--max-params",
                "50k",
            ]
        )
    assert_our_error(code, err, "different dataset", '"digits"', '"imagefolder"', "another --out")
    assert not calls and snapshot(folder) == before and _defining_meta(folder) == meta


def test_resume_with_another_space_is_refused(made, tmp_path, tiny_space):
    folder = _copy(made, tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(tiny_space.read_text().replace("high: 2", "high: 3", 1))
    assert other.read_text() != tiny_space.read_text()
    with fake_training() as calls:
        code, _, err = call(_argv(other, folder, "--resume", "--seed", "3", "--max-macs", "1M", "--max-params", "50k"))
    assert_our_error(code, err, "different space", "sha256", "another --out")
    assert not calls


def test_budgets_workers_and_quiet_may_change(made, tmp_path, tiny_space):
    folder = _copy(made, tmp_path)
    before, meta = snapshot(folder), _defining_meta(folder)
    with fake_training(limit=10) as calls:
        code, _, err = call(
            [
                "search",
                "--fidelity",
                "off",
                "--max-epochs",
                "2",
                "--dataset",
                "digits",
                "--space",
                tiny_space,
                "--out",
                folder,
                "--resume",
                "--seed",
                "3",
                "--max-macs",
                "1M",
                "--max-params",
                "50k",
                "--trials",
                "3",
                "--time-budget",
                "1h",
                "--workers",
                "1",
            ]
        )
    assert code == 0, err
    assert len(calls) == 1 and len(snapshot(folder)) == 3
    assert {k: v for k, v in snapshot(folder).items() if k in before} == before
    assert _defining_meta(folder) == meta  # never overwritten


RESUME_OPTIONS = {
    "--seed": st.sampled_from(["3", "4", "0"]),
    "--max-macs": st.sampled_from(["1M", "1e6", "2M"]),
    "--max-params": st.sampled_from(["50k", "60k"]),
    "--score": st.sampled_from(["mnas", "acc"]),
    "--trials": st.sampled_from(["2", "3", "1"]),
    "--time-budget": st.sampled_from(["1h", "5m"]),
}


@FUZZ_SEARCH
@given(data=st.data())
def test_fuzz_resume_with_changed_settings(data, made, tiny_space, tmp_path_factory):
    """Any mix of options: exit 0 when no defining setting changed, else one line naming the first changed
    one; the finished trials and the recorded settings never change."""
    folder = _copy(made, tmp_path_factory.mktemp("fuzz_resume"))
    before, meta = snapshot(folder), _defining_meta(folder)
    chosen = data.draw(st.dictionaries(st.sampled_from(sorted(RESUME_OPTIONS)), st.none(), max_size=4))
    opts = {"--seed": "3", "--max-macs": "1M", "--max-params": "50k", "--score": "mnas", "--trials": "2"}
    opts.update({k: data.draw(RESUME_OPTIONS[k], label=k) for k in chosen})
    changed = (
        opts["--seed"] != "3"
        or opts["--max-macs"] == "2M"
        or opts["--max-params"] != "50k"
        or opts["--score"] != "mnas"
    )
    argv = [
        "search",
        "--fidelity",
        "off",
        "--max-epochs",
        "2",
        "--dataset",
        "digits",
        "--space",
        tiny_space,
        "--out",
        folder,
        "--quiet",
        "--resume",
        *[x for k, v in opts.items() for x in (k, v)],
    ]
    with fake_training(limit=10):
        code, _, err = call(argv)
    if changed:
        assert_our_error(code, err, "--resume with a different", "another --out")
    else:
        assert code == 0, err
    assert {k: v for k, v in snapshot(folder).items() if k in before} == before
    assert _defining_meta(folder) == meta
    shutil.rmtree(folder.parent, ignore_errors=True)
