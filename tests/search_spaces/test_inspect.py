"""``nas inspect``'s engine: three counters agree, the text and JSON forms, one-line errors naming the file."""

import json

import pytest

from nas.errors import ConfigError
from search_spaces.inspect import inspect_config, inspect_main, parse_input_shape

CFG = {
    "stem": {"channels": 8, "stride": 2},
    "stages": [
        {"block": "BottleNeck", "channels": 16, "stride": 2, "expansion": 2},
        {"block": "InvertedResidual", "channels": 16, "repeats": 2, "se_ratio": 0.25, "activation": "silu"},
    ],
    "head": {"channels": 32},
    "classifier": {"dropout": 0.1, "num_classes": 5},
}


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
    bad_json.write_text('{"stem": ')
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


def test_yaml_configs_and_shipped_names_from_any_folder(tmp_path, monkeypatch):
    import yaml

    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(CFG))
    r = inspect_config(CFG, input_shape=(3, 16, 16))
    assert json.loads(inspect_main(path, (3, 16, 16), True))["params"] == r["params"]
    monkeypatch.chdir(tmp_path)  # not the repository root: the references are package data
    for name in ("mobilenet_v2", "mobilenet_v2.json"):
        d = json.loads(inspect_main(name, (3, 224, 224), True))
        assert d["params"] == 3504872 and d["macs"] == 300774272 and d["path"].endswith("reference/mobilenet_v2.json")
    with pytest.raises(ConfigError, match="no such file .*mobilenet_v2, resnet50"):
        inspect_main("mobilenet_v3", (3, 224, 224), True)
    bad = tmp_path / "bad.yaml"
    bad.write_text("stem: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{bad}: not valid YAML"):
        inspect_main(bad, (3, 16, 16), True)


def test_profile_measures_with_the_thread_count_it_states():
    import torch

    from search_spaces.profile import profile_model

    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            seen.append(torch.get_num_threads())
            return self.fc(x.flatten(1))

    before = torch.get_num_threads()
    prof = profile_model(Probe(), (1, 2, 2), repeats=2, warmup=1, threads=1)
    assert prof["threads"] == 1 and seen and set(seen) == {1}
    assert torch.get_num_threads() == before
