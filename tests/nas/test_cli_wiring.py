"""nas search is a thin layer over nas.api: flags become API options, and one check speaks both languages."""

import pytest

from nas import api
from nas.cli import build_parser
from nas.cli_wiring import FLAGS, api_options
from nas.errors import NasError
from nas.options import as_flags


def _options(*argv):
    return api_options(build_parser().parse_args(["search", *argv]))


def test_flags_become_api_options_and_unset_ones_stay_unset():
    o = _options("--objective", "pareto", "--no-channels-last", "--quiet", "--max-epochs", "4", "--max-macs", "200k")
    assert o["pareto"] is True and o["channels_last"] is False and o["progress"] is False
    assert o["max_epochs"] == 4 and o["max_macs"] == 200e3
    plain = _options()
    # unset: the API's defaults, or a resumed study's own settings, apply
    for name in ("seed", "score", "precision", "fidelity", "max_macs", "dataset", "trials"):
        assert plain[name] is None, name
    assert set(plain) <= set(api.prepare.__kwdefaults__)  # every flag is an API option


@pytest.mark.parametrize(
    "options, python, cli",
    [
        (
            dict(min_epochs=5, max_epochs=3),
            "min_epochs=5 is above max_epochs (3)",
            "--min-epochs 5 is above --max-epochs (3)",
        ),
        (dict(eta=1), "eta must be at least 2", "--eta must be at least 2"),
        (
            dict(epochs=2, fidelity="on"),
            "epochs fixes every trial's length; it cannot go with fidelity='on'",
            "--epochs fixes every trial's length; it cannot go with --fidelity on",
        ),
        (
            dict(workers=2, executor="inprocess"),
            "executor='inprocess' runs one trial at a time",
            "--executor inprocess runs one trial at a time",
        ),
        (
            dict(gpus_per_trial=1.0),
            "gpus_per_trial is a Ray resource request",
            "--gpus-per-trial is a Ray resource request",
        ),
    ],
)
def test_one_check_names_options_in_python_and_flags_on_the_cli(tmp_path, options, python, cli):
    with pytest.raises(NasError) as e:
        api.prepare(dataset="digits", out=tmp_path / "a", trials=2, **options)
    assert python in str(e.value) and "--" not in str(e.value)
    with as_flags(FLAGS), pytest.raises(NasError) as e:
        api.prepare(dataset="digits", out=tmp_path / "b", trials=2, **options)
    assert cli in str(e.value)


def test_the_resume_rule_and_the_score_name_the_option_or_the_flag():
    from nas.defining import check_resume
    from nas.errors import StudyError
    from nas.score import parse_score

    with pytest.raises(StudyError, match=r"resume=True with a different seed \(seed\).*another out= folder$"):
        check_resume({"seed": 0}, {"seed": 1}, where="x")
    with as_flags(FLAGS), pytest.raises(StudyError, match=r"--resume with a different seed \(--seed\).*another --out$"):
        check_resume({"seed": 0}, {"seed": 1}, where="x")
    with pytest.raises(NasError, match="^score: unknown score 'fancy'"):
        parse_score("fancy")
    with as_flags(FLAGS), pytest.raises(NasError, match="^--score: unknown score 'fancy'"):
        parse_score("fancy")
