"""`nas search` in multi-fidelity mode through the CLI, with a contract-following stand-in for the trainer
(instant, config-dependent curves, pickled checkpoints), so only the wiring is under test."""

import contextlib
import json
import pickle
import zlib

import pytest

from nas.cli import main
from nas.export import _choose
from nas.report import load_study
from nas.storage import Storage


@contextlib.contextmanager
def fake_trainer():
    import trainers.runner as runner

    specs = []

    def fake(spec):
        specs.append(
            {k: v for k, v in spec.items() if k != "checkpoint"} | {"has_ckpt": spec.get("checkpoint") is not None}
        )
        level = 0.3 + 0.6 * (zlib.crc32(json.dumps(spec["config"], sort_keys=True).encode()) % 1000) / 1000
        if "resource_to" not in spec:
            return {"value": level, "metrics": {"val_acc": level}}
        state = pickle.loads(spec["checkpoint"]) if spec["checkpoint"] else 0
        assert state == spec["resource_from"], (state, spec["resource_from"])
        curve = [
            {"epoch": e, "val_acc": level * e / spec["max_resource"]}
            for e in range(spec["resource_from"] + 1, spec["resource_to"] + 1)
        ]
        return {
            "value": curve[-1]["val_acc"],
            "metrics": {"curve": curve, "val_acc": curve[-1]["val_acc"]},
            "checkpoint": pickle.dumps(spec["resource_to"]),
            "resource": spec["resource_to"],
        }

    real = runner.run_trial
    runner.run_trial = fake
    try:
        yield specs
    finally:
        runner.run_trial = real


def search(out, space, *extra):
    try:
        return _search(out, space, *extra)
    except SystemExit as e:  # argparse's own errors exit 2 through SystemExit
        return e.code


def _search(out, space, *extra):
    return main(
        ["search", "--dataset", "digits", "--space", str(space), "--out", str(out), "--quiet", "--warmup", "3", *extra]
    )


def one_line_error(code, err, *needles):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_multi_fidelity_is_the_default_and_records_its_settings(tmp_path, tiny_space, capsys):
    out = tmp_path / "s"
    with fake_trainer() as specs:
        assert search(out, tiny_space, "--trials", "3", "--min-epochs", "1", "--max-epochs", "4", "--eta", "2") == 0
    printed = capsys.readouterr().out
    assert all({"resource_from", "resource_to", "max_resource"} <= set(s) and "epochs" not in s for s in specs)
    assert any(s["resource_from"] > 0 and s["has_ckpt"] for s in specs)  # promotions carry the checkpoint
    with Storage(out / "study.db", read_only=True) as st:
        meta, trials = st.meta(), st.trials()
    assert meta["fidelity"] == {"min_resource": 1, "max_resource": 4, "eta": 2, "rungs": [1, 2, 4]}
    assert meta["epoch_budget"] == 12 and meta["max_epochs"] == 4
    assert {t.status for t in trials} <= {"complete", "paused"} and any(t.status == "complete" for t in trials)
    assert "multi-fidelity: rungs 1/2/4 epochs" in printed and "saved" in printed
    # export: the best among top-rung trials by default; a paused one only when asked for
    view = load_study(out)
    best = _choose(view, None)
    assert best.status == "complete"
    assert best.score == max(t.score for t in trials if t.status == "complete")
    paused = [t for t in trials if t.status == "paused"]
    if paused:
        assert _choose(view, paused[0].id).id == paused[0].id
    assert main(["report", str(out), "--no-profile"]) == 0
    assert (out / "learning_curves.png").stat().st_size > 0 and (out / "epochs_per_rung.png").stat().st_size > 0


def test_fidelity_off_trains_every_trial_for_max_epochs_and_resume_keeps_it(tmp_path, tiny_space):
    out = tmp_path / "s"
    with fake_trainer() as specs:
        assert search(out, tiny_space, "--trials", "2", "--fidelity", "off", "--max-epochs", "3") == 0
        assert search(out, tiny_space, "--trials", "3", "--resume") == 0  # no flags: the study's own mode
    assert len(specs) == 3 and all(s["epochs"] == 3 and "resource_to" not in s for s in specs)
    with Storage(out / "study.db", read_only=True) as st:
        assert st.get_meta("fidelity") is None
        assert [t.status for t in st.trials()] == ["complete"] * 3


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--min-epochs", "5", "--max-epochs", "3"], ["--min-epochs 5 is above --max-epochs (3)"]),
        (["--min-epochs", "30"], ["--min-epochs 30 is above the digits preset's max epochs"]),
        (["--eta", "1"], ["--eta must be at least 2"]),
        (["--eta", "x"], ["--eta"]),
        (["--fidelity", "maybe"], ["--fidelity"]),
        (["--max-epochs", "0"], ["--max-epochs"]),
    ],
)
def test_bad_fidelity_options_are_one_line_errors_before_any_trial(tmp_path, tiny_space, capsys, extra, needles):
    with fake_trainer() as specs:
        code = search(tmp_path / "s", tiny_space, "--trials", "2", *extra)
    one_line_error(code, capsys.readouterr().err, *needles)
    assert not specs and not (tmp_path / "s" / "study.db").exists()


def test_resume_with_other_fidelity_settings_loses_nothing(tmp_path, tiny_space, capsys):
    out = tmp_path / "s"
    with fake_trainer():
        assert search(out, tiny_space, "--trials", "2", "--max-epochs", "4", "--eta", "2") == 0
    with Storage(out / "study.db", read_only=True) as st:
        before = [t.to_dict() for t in st.trials()]
    capsys.readouterr()
    with fake_trainer() as specs:
        code = search(out, tiny_space, "--trials", "4", "--resume", "--eta", "3")
    one_line_error(code, capsys.readouterr().err, "other fidelity settings")
    assert not specs
    with Storage(out / "study.db", read_only=True) as st:
        assert [t.to_dict() for t in st.trials()] == before
    with fake_trainer() as specs:  # the study's own settings, read back from it
        assert search(out, tiny_space, "--trials", "4", "--resume") == 0
    assert specs and all(s["max_resource"] == 4 for s in specs)
