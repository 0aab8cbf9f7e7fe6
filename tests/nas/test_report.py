"""Reports on synthetic studies: files, flattened tables, Pareto rows, HTML, empty and running studies."""

import hashlib
import multiprocessing as mp
import random
import re

import numpy as np
import pandas as pd
import pytest

from nas import fmt
from nas.errors import StudyError
from nas.report import format_summary, load_study, parameter_importance, write_report
from nas.storage import Storage
from nas.trial import COMPLETE, FAILED, INFEASIBLE, RUNNING
from search_spaces.summary import SUMMARIES, block_summary

from example_configs import EVERY_BLOCK

BRIEF_CONFIG = {**EVERY_BLOCK, "classifier": {"dropout": 0.0}}


def random_config(rng):
    stages = []
    for _ in range(rng.randint(1, 3)):
        block = rng.choice(["Conv", "BottleNeck", "InvertedResidual"])
        s = {
            "block": block,
            "channels": rng.choice([16, 32, 64]),
            "stride": rng.choice([1, 2]),
            "repeats": rng.randint(1, 3),
            "kernel": rng.choice([3, 5]),
            "activation": rng.choice(["relu", "hardswish"]),
        }
        if block != "Conv":
            s["expansion"] = rng.choice([2, 4, 6])
        stages.append(s)
    opt = rng.choice(["sgd", "adam"])
    optimizer = (
        {"name": "sgd", "momentum": rng.choice([0.8, 0.9]), "nesterov": rng.random() < 0.5}
        if opt == "sgd"
        else {"name": "adam", "beta1": 0.9, "beta2": 0.999}
    )
    return {
        **BRIEF_CONFIG,
        "stages": stages,
        "optimizer": optimizer,
        "lr": 10 ** rng.uniform(-3, -1),
        "classifier": {"dropout": rng.choice([0.0, 0.2])},
    }


def fill(db, n, *, seed=0, direction="maximize", value_fn=None):
    """n trials: ~10% failed, one infeasible, the rest complete with random value/MACs/params."""
    rng = random.Random(seed)
    with Storage(db) as st:
        st.set_meta("direction", direction)
        st.set_meta("space", {"note": "x" * 300})
        for i in range(n):
            cfg = random_config(rng)
            t = st.add_trial(
                cfg,
                status=RUNNING,
                started_at=1000.0 + i,
                known={"macs": rng.randint(10**5, 10**8), "params": rng.randint(10**3, 10**6)},
            )
            if i == 3:
                t.status, t.error = INFEASIBLE, "MACs 1e9 over the budget 1e8"
            elif rng.random() < 0.1:
                t.status, t.error = FAILED, "RuntimeError: CUDA out of memory\ntraceback..."
            else:
                t.value = value_fn(cfg, rng) if value_fn else rng.uniform(0.3, 0.9)
                t.status, t.score = COMPLETE, t.value - 1e-9 * t.macs
                t.metrics = {
                    "val_acc": t.value,
                    "test_acc": t.value - 0.02,
                    "train_time": 2.5,
                    "curve": [0.1, 0.2, t.value],
                }
            t.finished_at = t.started_at + 3.0
            st.update_trial(t)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    fill(folder / "study.db", 30)
    return folder


def dominates(a, b):
    """a, b: (value, macs, params); value maximised, costs minimised."""
    ge = a[0] >= b[0] and a[1] <= b[1] and a[2] <= b[2]
    return ge and (a[0] > b[0] or a[1] < b[1] or a[2] < b[2])


def test_block_summary_of_the_brief_config():
    assert block_summary(BRIEF_CONFIG) == "Conv32s2-BN64s2x2-IR64x2"
    assert block_summary({"lr": 0.1}) == ""


def test_trials_dataframe_flattens_config_and_metrics(study):
    view = load_study(study, summaries=SUMMARIES)
    df = view.trials_dataframe()
    assert len(df) == 30 and df["id"].tolist() == list(range(1, 31))
    for col in (
        "id",
        "status",
        "value",
        "score",
        "macs",
        "params",
        "val_acc",
        "test_acc",
        "train_time",
        "duration",
        "error",
        "blocks",
        "optimizer.name",
        "stages.0.block",
        "stages.0.channels",
        "stem.channels",
        "lr",
        "classifier.dropout",
    ):
        assert col in df.columns, col
    assert not any(c.startswith("curve") for c in df.columns)
    for t in view.trials:  # every flat cell equals the nested value it came from
        row = df.set_index("id").loc[t.id]
        assert row["optimizer.name"] == t.config["optimizer"]["name"]
        assert row["stages.0.channels"] == t.config["stages"][0]["channels"]
        assert row["duration"] == pytest.approx(3.0)
        if len(t.config["stages"]) < 3:
            assert pd.isna(row.get("stages.2.block", np.nan))
    cols = list(df.columns)  # siblings stay together: stages.1.* between stages.0.* and stages.2.*
    assert max(i for i, c in enumerate(cols) if c.startswith("stages.0.")) < cols.index("stages.1.block")


def test_config_key_clashing_with_a_column_is_prefixed(tmp_path):
    with Storage(tmp_path / "study.db") as st:
        t = st.add_trial({"value": 3, "optimizer": {"name": "adam"}}, status=RUNNING)
        t.status, t.value = COMPLETE, 0.5
        st.update_trial(t)
    df = load_study(tmp_path).trials_dataframe()
    assert df.loc[0, "value"] == 0.5 and df.loc[0, "config.value"] == 3


def test_best_and_direction(tmp_path):
    fill(tmp_path / "a" / "study.db", 12, seed=1)
    fill(tmp_path / "b" / "study.db", 12, seed=1, direction="minimize")
    up, down = load_study(tmp_path / "a"), load_study(tmp_path / "b")
    scores = [t.score for t in up.trials if t.status == COMPLETE]
    assert up.best.score == max(scores) and down.best.score == min(scores)
    assert up.best.status == COMPLETE


def test_pareto_front_rows_are_exactly_the_non_dominated(study):
    view = load_study(study)
    front = view.pareto_front()
    done = [t for t in view.trials if t.status == COMPLETE]
    pts = {t.id: (t.value, t.macs, t.params) for t in done}
    expected = {i for i, p in pts.items() if not any(dominates(q, p) for q in pts.values())}
    assert set(front["id"]) == expected and len(front) >= 2
    assert front["macs"].is_monotonic_increasing
    assert set(front["status"]) == {COMPLETE}


def test_write_report_files(study):
    files = write_report(study)
    assert set(files) == {
        "trials.csv",
        "pareto.csv",
        "score_over_trials.png",
        "acc_vs_macs.png",
        "pareto_front.png",
        "param_effects.png",
        "report.html",
    }
    for name, path in files.items():
        assert path.parent == study and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in study.iterdir() if p.name.endswith(".tmp")]
    csv = pd.read_csv(study / "trials.csv")
    assert len(csv) == 30
    assert {"optimizer.name", "stages.0.block", "stages.0.channels", "val_acc", "test_acc"} <= set(csv.columns)
    pareto = pd.read_csv(study / "pareto.csv")
    assert set(pareto["id"]) == set(load_study(study).pareto_front()["id"])
    html = (study / "report.html").read_text()
    srcs = re.findall(r'src\s*=\s*["\']([^"\']*)', html)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "http://" not in html and "https://" not in html
    assert "Pareto front" in html and "CUDA out of memory" in html and "Best trial: #" in html


def test_format_summary_tables(study):
    view = load_study(study, summaries=SUMMARIES)
    text = format_summary(view, top=5)
    assert "complete" in text and "failed" in text and "infeasible 1" in text
    top = view.ranked()[:5]
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("top 5 trials"))
    ids = [int(line.split()[0]) for line in lines[start + 2 : start + 7]]
    assert ids == [t.id for t in top]
    assert block_summary(top[0].config) in text
    assert "Pareto front (value max, macs min, params min)" in text


def test_importance_finds_the_parameter_that_matters(tmp_path):
    # value depends on lr only (plus small noise): lr must rank first by a wide margin
    fill(
        tmp_path / "study.db",
        40,
        seed=3,
        value_fn=lambda cfg, rng: 0.9 - 0.1 * abs(np.log10(cfg["lr"]) + 2) + rng.gauss(0, 0.002),
    )
    imp = parameter_importance(load_study(tmp_path))
    assert imp.index[0] == "lr" and imp.iloc[0] > 0.5
    assert imp.sum() == pytest.approx(1.0)


def test_empty_study_is_a_clear_error(tmp_path):
    with Storage(tmp_path / "study.db") as st:
        st.set_meta("direction", "maximize")
        st.add_trial({}, status=RUNNING)
    view = load_study(tmp_path)
    assert view.best is None and view.pareto_front().empty
    for call in (lambda: write_report(tmp_path), lambda: format_summary(view)):
        with pytest.raises(StudyError, match="study has no finished trials yet"):
            call()
    with pytest.raises(StudyError, match=r"not a study \(no study.db\)"):
        load_study(tmp_path / "..")
    with pytest.raises(StudyError, match="does not exist"):
        load_study(tmp_path / "nope")


def test_all_failed_study_still_reports(tmp_path):
    with Storage(tmp_path / "study.db") as st:
        t = st.add_trial({"lr": 1.0}, status=RUNNING)
        t.status, t.error = FAILED, "ValueError: loss is nan"
        st.update_trial(t)
    assert "loss is nan" in format_summary(load_study(tmp_path))
    assert (tmp_path / "report.html").exists() is False
    write_report(tmp_path)
    assert "loss is nan" in (tmp_path / "report.html").read_text()


def _running_writer(db, started, release):
    fill(db, 8, seed=5)
    with Storage(db) as st:  # stay connected with a trial in flight
        st.add_trial({"lr": 0.1}, status=RUNNING)
        started.set()
        release.wait(30)


def test_report_on_a_running_study_reads_only(tmp_path):
    ctx = mp.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    db = tmp_path / "study.db"
    proc = ctx.Process(target=_running_writer, args=(db, started, release))
    proc.start()
    try:
        assert started.wait(60)
        # study.db-shm is SQLite's shared-memory WAL index, where every reader keeps its read marks; the
        # database and its log must stay byte for byte as the writer left them.
        files = [tmp_path / "study.db", tmp_path / "study.db-wal"]
        digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        view = load_study(tmp_path)
        assert len(view.trials) == 9 and view.trials[-1].status == RUNNING
        format_summary(view)
        write_report(tmp_path)
        after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        assert after == digest  # the report wrote nothing into the database files
    finally:
        release.set()
        proc.join(30)
    assert proc.exitcode == 0


def test_model_section_with_profile(tmp_path):
    torch = pytest.importorskip("torch")
    from search_spaces.profile import format_profile, model_section_html, profile_model

    fill(tmp_path / "study.db", 6, seed=2)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    model.train()
    seen = []

    def section(best):
        seen.append(best.id)
        prof = profile_model(model, (3, 8, 8), batches=(1, 4), repeats=3, warmup=1)
        return {"title": "Best model", "html": model_section_html(prof), "text": format_profile(prof)}

    files = write_report(tmp_path, model_section=section)
    assert seen == [load_study(tmp_path).best.id]
    assert "model.txt" in files and "#flops" in files["model.txt"].read_text()
    html = files["report.html"].read_text()
    assert "<h2>Best model</h2>" in html and "images / s" in html  # the section's own HTML, not escaped


def test_failing_model_section_does_not_break_the_report(tmp_path):
    fill(tmp_path / "study.db", 5, seed=4)

    def section(best):
        raise RuntimeError("cannot build")

    with pytest.warns(UserWarning, match="model section failed"):
        files = write_report(tmp_path, model_section=section)
    assert "cannot build" in files["report.html"].read_text()


def test_html_escapes_what_a_study_holds_and_shows_readable_times(tmp_path):
    evil = "<script>alert(1)</script>"
    with Storage(tmp_path / "study.db") as st:
        st.set_meta("direction", "maximize")
        st.set_meta("note", evil)
        st.set_meta("created_at", 1796158693.71)
        st.set_meta("elapsed", 76.635606)
        for i, status in enumerate((COMPLETE, FAILED)):
            t = st.add_trial({"lr": 0.1 * (i + 1), "name": evil}, status=RUNNING, started_at=100.0)
            t.status, t.value, t.finished_at, t.error = status, 0.5 if status == COMPLETE else None, 176.6, evil
            st.update_trial(t)
    html = write_report(tmp_path)["report.html"].read_text()
    assert "<script>" not in html and html.count("&lt;script&gt;") >= 3  # meta, best config, error table
    assert "1796158693.71" not in html and fmt.when(1796158693.71) in html and ">1m 16.6s<" in html
    assert re.search(r"<td>1m 16\.6s</td>", html)  # the best trial's time
    csv = pd.read_csv(tmp_path / "trials.csv")
    assert csv.loc[0, "duration"] == pytest.approx(76.6)  # machines keep raw seconds


def test_known_objectives_are_columns_by_name_and_summaries_are_optional(tmp_path):
    with Storage(tmp_path / "study.db") as st:
        st.set_meta("direction", "maximize")
        for i, (value, flops) in enumerate([(0.9, 300.5), (0.8, 100.25), (0.7, 200.0)]):
            t = st.add_trial(
                {"stages": [{"block": "Conv", "channels": 8 * (i + 1)}]}, status=RUNNING, known={"flops": flops}
            )
            t.status, t.value = COMPLETE, value
            st.update_trial(t)
    view = load_study(tmp_path)
    df = view.trials_dataframe()
    assert "blocks" not in df and "macs" not in df and df["flops"].tolist() == [300.5, 100.25, 200.0]
    assert view.pareto_objectives() == [("value", True), ("flops", False)]
    assert view.pareto_front(posterior=False)["id"].tolist() == [2, 1]
    text = format_summary(load_study(tmp_path, summaries={"blocks": block_summary}))
    assert "flops" in text and "Conv8" in text and "Pareto front (value max, flops min)" in text


def test_a_multi_fidelity_study_has_its_section_and_plots(tmp_path):
    from nas.fidelity import Fidelity
    from nas.optimizer import Optimizer
    from nas.space import Float, Space
    from nas.study import Budget, Study

    def objective(spec):
        return {
            "value": spec["config"]["x"] * spec["resource_to"] / 9,
            "resource": spec["resource_to"],
            "metrics": {"curve": [{"epoch": spec["resource_to"], "val_acc": spec["config"]["x"]}]},
        }

    opt = Optimizer(Space([Float("x", 0.0, 1.0)]), seed=0, n_warmup=3, fidelity=Fidelity(1, 9, 3))
    Study(tmp_path, optimizer=opt, objective=objective, budget=Budget(trials=3), meta={"direction": "maximize"}).run()
    files = write_report(tmp_path)
    assert {"learning_curves.png", "epochs_per_rung.png"} <= set(files)
    html = files["report.html"].read_text()
    section = html[html.index("<h2>Multi-fidelity</h2>") : html.index("<h2>Best trial")]
    assert re.search(
        r"Epochs trained \d+; training each of the\s+\d+ evaluated trials to 9 epochs would take \d+:"
        r"\s+\d+ saved \(\d+%\)",
        section,
    ), section
    assert "<table" in section and "&lt;table" not in section  # the rung table is markup, not escaped text
