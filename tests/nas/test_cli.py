"""The `nas` command line, end to end on the bundled digits data, with real study folders."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    code = main(
        [
            "search",
            "--dataset",
            "digits",
            "--trials",
            "4",
            "--warmup",
            "3",
            "--space",
            str(tiny_space),
            *OFF,
            "--out",
            str(out),
            "--quiet",
            "--seed",
            "1",
        ]
    )
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
    code, _, err = run(
        capsys,
        "search",
        "--dataset",
        "digits",
        "--trials",
        "4",
        "--space",
        str(tiny_space),
        *OFF,
        "--out",
        str(study),
        "--quiet",
    )
    assert_one_line_error(code, err, "--resume")
    code, out, _ = run(
        capsys,
        "search",
        "--dataset",
        "digits",
        "--trials",
        "5",
        "--space",
        str(tiny_space),
        *OFF,
        "--out",
        str(study),
        "--quiet",
        "--resume",
    )
    assert code == 0
    with Storage(study / "study.db", read_only=True) as st:
        assert st.count() == 5


def test_report_prints_tables_and_writes_files(capsys, study):
    code, out, _ = run(capsys, "report", str(study), "--no-profile")
    assert code == 0
    assert "Pareto" in out
    for name in ("trials.csv", "pareto.csv", "report.html"):
        assert (study / name).stat().st_size > 0


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["search", "--dataset", "svhn"], ["unknown data set 'svhn'"]),
        (["search", "--trials", "0"], ["--trials"]),
        (["search", "--max-macs", "lots"], ["--max-macs"]),
        (["search", "--score", "fancy"], ["unknown score 'fancy'"]),
        (["search", "--dataset", "imagefolder", "--data-dir", "/nonexistent/dir"], ["/nonexistent/dir"]),
        (["report", "/nonexistent/study"], ["/nonexistent/study"]),
        (["inspect", "/nonexistent/config.json"], ["/nonexistent/config.json"]),
        (["space", "/nonexistent/space.yaml"], ["/nonexistent/space.yaml"]),
        (["inspect", "x.json", "--input-shape", "3,224"], ["--input-shape"]),
    ],
)
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
    code, _, err = run(
        capsys,
        "search",
        "--max-macs",
        "10",
        "--space",
        str(tiny_space),
        "--trials",
        "2",
        "--out",
        str(tmp_path / "s"),
        "--quiet",
    )
    assert_one_line_error(code, err, "no config satisfies")


def test_a_space_file_that_is_not_a_network(capsys, tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("params: [{name: x, type: float, low: 0, high: 1}]\n")
    code, _, err = run(capsys, "search", "--space", str(path), "--trials", "1", "--out", str(tmp_path / "s"), "--quiet")
    assert_one_line_error(code, err, str(path))


def test_report_on_an_empty_folder(capsys, tmp_path):
    code, _, err = run(capsys, "report", str(tmp_path))
    assert_one_line_error(code, err, "not a study")


def test_inspect_reference_json(capsys):
    code, out, _ = run(
        capsys,
        "inspect",
        str(ROOT / "search_spaces/reference/mobilenet_v2.json"),
        "--input-shape",
        "3,224,224",
        "--json",
    )
    assert code == 0
    d = json.loads(out)
    assert d["params"] == 3504872 and d["macs"] == 300774272


def test_space_summary(capsys, tiny_space):
    code, out, _ = run(capsys, "space")
    assert code == 0 and "stages[i].block" in out and "optimizer.momentum" in out
    code, out, _ = run(capsys, "space", str(tiny_space))
    assert code == 0 and 'if stages[i].block = "InvertedResidual"' in out


def test_console_script_exit_code_and_single_line(tmp_path):
    """The installed entry point, in a real process: exit 2, one line, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: [{name: a, type: float, low: 1, high: 0}]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "nas.cli", "space", str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "low 1 is above high 0" in proc.stderr


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Two classes of twelve 10x10 PNGs: a dark and a bright one, so a trial can learn them."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for k, name in enumerate(("dark", "bright")):
        (root / name).mkdir()
        for i in range(12):
            px = (rng.integers(0, 100, (10, 10, 3)) + 150 * k).astype(np.uint8)
            Image.fromarray(px).save(root / name / f"{i}.png")
    return root


def test_data_dir_alone_means_an_image_folder_with_the_new_options(capsys, tmp_path, image_folder, tiny_space):
    out = tmp_path / "s"
    code, _, err = run(
        capsys,
        "search",
        "--data-dir",
        str(image_folder),
        "--image-size",
        "8",
        "--epochs",
        "1",
        "--val-fraction",
        "0.25",
        "--test-fraction",
        "0.25",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--trials",
        "2",
        "--warmup",
        "2",
        "--space",
        str(tiny_space),
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, err
    with Storage(out / "study.db", read_only=True) as st:
        meta, trials = st.meta(), st.trials()
    assert meta["dataset"] == "imagefolder" and meta["input_shape"] == [3, 8, 8] and meta["num_classes"] == 2
    assert meta["data_seed"] == 3 and meta["epochs"] == 1 and meta["device"] == "cpu"
    assert meta["val_fraction"] == 0.25 and meta["image_size"] == 8
    assert all(t.status == "complete" and t.metrics["epochs_run"] == 1 for t in trials), [t.error for t in trials]

    from trainers.runner import cached_dataset

    a = cached_dataset("imagefolder", str(image_folder), 3, False, 8, 0.25, 0.25)
    b = cached_dataset("imagefolder", str(image_folder), 0, False, 8, 0.25, 0.25)
    assert len(a.y_val) == 6 and not torch.equal(a.x_val, b.x_val)  # --seed moves the split


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--data-dir", "{here}"], ["is not an image folder"]),
        (["--data-dir", "/nonexistent/dir"], ["/nonexistent/dir", "does not exist"]),
        (["--dataset", "digits", "--data-dir", "{here}"], ["would be ignored"]),
        (["--image-size", "4"], ["--image-size", "from 8 to 1024"]),
        (["--image-size", "2048"], ["--image-size"]),
        (["--dataset", "digits", "--image-size", "16"], ["digits images are 8x8"]),
        (["--val-fraction", "1.5"], ["--val-fraction", "strictly between 0 and 1"]),
        (["--test-fraction", "0"], ["--test-fraction"]),
        (["--val-fraction", "0.5", "--test-fraction", "0.5"], ["leaves no training data"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--device", "tpu"], ["device 'tpu'"]),
    ],
)
def test_bad_new_search_options_are_one_line(capsys, tmp_path, argv, needles):
    argv = [a.replace("{here}", str(Path(__file__).parent)) for a in argv]
    code, _, err = run_safely(capsys, ["search", *argv, "--trials", "1", "--out", str(tmp_path / "s"), "--quiet"])
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "s" / "study.db").exists()


def test_inspect_a_shipped_config_by_name_from_another_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nas.cli", "inspect", "resnet50", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["params"] == 25557032
