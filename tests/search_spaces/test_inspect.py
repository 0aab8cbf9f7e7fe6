"""``nas inspect``'s engine: three counters agree, the text and JSON forms, one-line errors naming the file."""
import json

import pytest

from nas.errors import ConfigError
from search_spaces.inspect import inspect_config, inspect_main, parse_input_shape

CFG = {"stem": {"channels": 8, "stride": 2},
       "stages": [{"block": "BottleNeck", "channels": 16, "stride": 2, "expansion": 2},
                  {"block": "InvertedResidual", "channels": 16, "repeats": 2, "se_ratio": 0.25, "activation": "silu"}],
       "head": {"channels": 32}, "classifier": {"dropout": 0.1, "num_classes": 5}}


def test_three_counters_agree():
    r = inspect_config(CFG, input_shape=(3, 16, 16))
    assert r["agree"] and r["params"] == r["counted_params"] and r["macs"] == r["counted_macs"] == r["fvcore_macs"]
    assert r["num_classes"] == 5 and r["output_shape"] == [1, 5]
    assert "stages.1.1" in r["table"] and "#flops" in r["table"]


def test_text_and_json(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps(CFG))
    text = inspect_main(path, "3x16x16", False)
    r = inspect_config(CFG, input_shape=(3, 16, 16))
    assert f"params        {r['params']:,}" in text and f"MACs          {r['macs']:,}" in text
    assert ": ok" in text and "| model" in text
    data = json.loads(inspect_main(path, (3, 16, 16), True))
    assert data["params"] == r["params"] and data["macs"] == r["macs"] and data["agree"] is True
    assert data["path"] == str(path) and "table" not in data


def test_trial_record_and_assumed_classes(tmp_path):
    cfg = {k: v for k, v in CFG.items() if k != "classifier"}
    path = tmp_path / "trial.json"
    path.write_text(json.dumps({"id": 3, "config": cfg, "status": "complete"}))
    assert "10 classes (assumed" in inspect_main(path, "3,16,16", False)
    assert json.loads(inspect_main(path, "3x16x16", True, num_classes=4))["num_classes"] == 4


def test_errors_are_one_line_and_name_the_file(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{\"stem\": ")
    with pytest.raises(ConfigError, match=f"{bad_json}: not valid JSON") as info:
        inspect_main(bad_json, "3x8x8", False)
    assert "\n" not in str(info.value)
    bad_cfg = tmp_path / "cfg.json"
    bad_cfg.write_text(json.dumps({**CFG, "stages": [{"block": "Foo", "channels": 8}]}))
    with pytest.raises(ConfigError, match=f"{bad_cfg}: stages\\[0\\]\\.block: unknown block 'Foo'"):
        inspect_main(bad_cfg, "3x8x8", False)
    with pytest.raises(ConfigError, match="no such file"):
        inspect_main(tmp_path / "missing.json", "3x8x8", False)
    with pytest.raises(ConfigError, match="expected CxHxW"):
        parse_input_shape("3x8")
    assert parse_input_shape("1 x 28 x 28") == (1, 28, 28) and parse_input_shape([3, 8, 8]) == (3, 8, 8)
