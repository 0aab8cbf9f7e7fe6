"""The `nas` command line, end to end on the bundled digits data, with real study folders."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from nas.storage import Storage

OFF = ("--fidelity", "off", "--max-epochs", "2")  # these tests count whole trials of at most 2 epochs

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_space) -> Path:
    out = tmp_path_factory.mktemp("study") / "digits"
    code = main(["search", "--dataset", "digits", "--trials", "4", "--warmup", "3", "--space", str(tiny_space), *OFF,
                 "--out", str(out), "--quiet", "--seed", "1"])
    assert code == 0
    return out


def test_search_writes_every_trial(study):
    with Storage(study / "study.db", read_only=True) as st:
        trials = st.trials()
        meta = st.meta()
    assert len(trials) == 4
    assert meta["dataset"] == "digits" and meta["input_shape"] == [1, 8, 8] and meta["num_classes"] == 10
    for t in trials:
        assert t.status == "complete", t.error
        assert 0.0 <= t.value <= 1.0
        assert t.macs > 0 and t.params > 0
        assert 0.0 <= t.metrics["test_acc"] <= 1.0
        assert (study / t.metrics["weights"]).exists()
        assert t.score is not None


def test_resume_extends_and_a_second_plain_search_is_refused(capsys, study, tiny_space):
    code, _, err = run(capsys, "search", "--dataset", "digits", "--trials", "4", "--space", str(tiny_space), *OFF,
                       "--out", str(study), "--quiet")
    assert_one_line_error(code, err, "--resume")
    code, out, _ = run(capsys, "search", "--dataset", "digits", "--trials", "5", "--space", str(tiny_space), *OFF,
                       "--out", str(study), "--quiet", "--resume")
    assert code == 0
    with Storage(study / "study.db", read_only=True) as st:
        assert st.count() == 5


def test_report_prints_tables_and_writes_files(capsys, study):
    code, out, _ = run(capsys, "report", str(study), "--no-profile")
    assert code == 0
    assert "Pareto" in out
    for name in ("trials.csv", "pareto.csv", "report.html"):
        assert (study / name).stat().st_size > 0


@pytest.mark.parametrize("argv, needles", [
    (["search", "--dataset", "svhn"], ["unknown data set 'svhn'"]),
    (["search", "--trials", "0"], ["--trials"]),
    (["search", "--max-macs", "lots"], ["--max-macs"]),
    (["search", "--score", "fancy"], ["unknown score 'fancy'"]),
    (["search", "--dataset", "imagefolder", "--data-dir", "/nonexistent/dir"], ["/nonexistent/dir"]),
    (["report", "/nonexistent/study"], ["/nonexistent/study"]),
    (["inspect", "/nonexistent/config.json"], ["/nonexistent/config.json"]),
    (["space", "/nonexistent/space.yaml"], ["/nonexistent/space.yaml"]),
    (["inspect", "x.json", "--input-shape", "3,224"], ["--input-shape"]),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needles):
    code, _, err = run_safely(capsys, argv)
    assert_one_line_error(code, err, *needles)


def run_safely(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse exits itself
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_budget_no_config_meets_is_refused(capsys, tmp_path, tiny_space):
    code, _, err = run(capsys, "search", "--max-macs", "10", "--space", str(tiny_space), "--trials", "2",
                       "--out", str(tmp_path / "s"), "--quiet")
    assert_one_line_error(code, err, "no config satisfies")


def test_a_space_file_that_is_not_a_network(capsys, tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("params: [{name: x, type: float, low: 0, high: 1}]\n")
    code, _, err = run(capsys, "search", "--space", str(path), "--trials", "1", "--out", str(tmp_path / "s"),
                       "--quiet")
    assert_one_line_error(code, err, str(path))


def test_report_on_an_empty_folder(capsys, tmp_path):
    code, _, err = run(capsys, "report", str(tmp_path))
    assert_one_line_error(code, err, "not a study")


def test_inspect_reference_json(capsys):
    code, out, _ = run(capsys, "inspect", str(ROOT / "search_spaces/reference/mobilenet_v2.json"),
                       "--input-shape", "3,224,224", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["params"] == 3504872 and d["macs"] == 300774272


def test_space_summary(capsys, tiny_space):
    code, out, _ = run(capsys, "space")
    assert code == 0 and "stages[i].block" in out and "optimizer.momentum" in out
    code, out, _ = run(capsys, "space", str(tiny_space))
    assert code == 0 and "if stages[i].block = \"InvertedResidual\"" in out


def test_console_script_exit_code_and_single_line(tmp_path):
    """The installed entry point, in a real process: exit 2, one line, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: [{name: a, type: float, low: 1, high: 0}]\n")
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "space", str(bad)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "low 1 is above high 0" in proc.stderr
