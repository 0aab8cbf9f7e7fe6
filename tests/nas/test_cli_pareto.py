"""`nas search --objective pareto`, the front in `nas report`, and `nas export --max-macs`, on tiny digits runs."""

import pandas as pd
import pytest

from nas.cli import main
from nas.report import load_study
from nas.storage import Storage
from search_spaces.summary import SUMMARIES


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def pareto_study(tmp_path_factory, tiny_space):
    out = tmp_path_factory.mktemp("pareto") / "digits"
    code = main(
        [
            "search",
            "--dataset",
            "digits",
            "--trials",
            "6",
            "--warmup",
            "3",
            "--space",
            str(tiny_space),
            "--out",
            str(out),
            "--quiet",
            "--seed",
            "2",
            "--objective",
            "pareto",
            "--max-macs",
            "400k",
            "--fidelity",
            "off",
        ]
    )
    assert code == 0
    return out


def test_pareto_search_with_multi_fidelity_keeps_the_limit(tmp_path, tiny_space):
    out = tmp_path / "mf"
    assert (
        main(
            [
                "search",
                "--dataset",
                "digits",
                "--trials",
                "5",
                "--warmup",
                "3",
                "--space",
                str(tiny_space),
                "--out",
                str(out),
                "--quiet",
                "--seed",
                "3",
                "--objective",
                "pareto",
                "--max-macs",
                "400k",
            ]
        )
        == 0
    )
    with Storage(out / "study.db", read_only=True) as st:
        trials = st.trials()
    assert trials and all(t.macs <= 400e3 for t in trials)


def test_search_records_the_objectives_and_respects_the_limit(pareto_study):
    with Storage(pareto_study / "study.db", read_only=True) as st:
        meta, trials = st.meta(), st.trials()
    assert meta["objectives"] == {"acc": "maximize", "macs": "minimize", "params": "minimize"}
    assert len(trials) == 6 and all(t.macs <= 400e3 for t in trials)


def test_report_draws_the_front_with_its_posterior(capsys, pareto_study):
    code, out, _ = run(capsys, "report", str(pareto_study), "--no-profile")
    assert code == 0 and "Pareto front" in out and "±" in out
    assert (pareto_study / "pareto_front.png").read_bytes()[:4] == b"\x89PNG"
    csv = pd.read_csv(pareto_study / "pareto.csv")
    front = load_study(pareto_study, summaries=SUMMARIES).pareto_front()  # as nas report reads it
    assert list(csv.columns) == list(front.columns) and {"post_mean", "post_std"} <= set(csv.columns)
    assert set(csv["id"]) == set(front["id"]) and (front["post_std"] > 0).all()


def test_export_picks_the_most_accurate_member_within_the_budget(capsys, pareto_study, tmp_path):
    front = load_study(pareto_study).pareto_front(posterior=False)
    budget = float(front["macs"].max())
    code, _, err = run(
        capsys, "export", str(pareto_study), "--out", str(tmp_path / "m"), "--no-retrain", "--max-macs", str(budget)
    )
    assert code == 0
    want = int(front.loc[front["value"].idxmax(), "id"])
    assert f"trial {want}" in err
    import json

    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg  # the chosen config was written


def test_export_budget_below_every_member_is_one_line(capsys, pareto_study, tmp_path):
    code, _, err = run(capsys, "export", str(pareto_study), "--out", str(tmp_path / "x"), "--max-macs", "10")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "no front member fits" in lines[0] and "raise the budget" in lines[0]
