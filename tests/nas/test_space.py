import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.errors import SpaceError
from nas.space import Categorical, Constant, Float, Group, Integer, Repeat, Space


def make_space() -> Space:
    block = Categorical(
        "block",
        {
            "Conv": [Integer("kernel", 1, 5, step=2), Categorical("activation", ["relu", "silu"])],
            "InvertedResidual": [
                Integer("kernel", 3, 7, step=2),
                Integer("expansion", 1, 6),
                Categorical("se_ratio", [0.0, 0.25]),
            ],
        },
    )
    optimizer = Categorical(
        "name",
        {
            "sgd": [Float("momentum", 0.5, 0.99), Categorical("nesterov", [True, False])],
            "adam": [Float("beta1", 0.8, 0.99), Float("beta2", 0.9, 0.9999)],
            "nested": [Categorical("inner", {"a": [Integer("deep", 0, 3)], "b": []})],
        },
    )
    return Space(
        [
            Repeat("stages", 1, 4, [block, Integer("channels", 8, 64, step=8), Categorical("stride", [1, 2])]),
            Group("optimizer", [optimizer]),
            Float("lr", 1e-4, 0.3, log=True),
            Integer("batch_size", 16, 256, log=True),
            Constant("epochs", 3),
        ],
        name="test",
    )


SPACE = make_space()


def test_sampled_configs_are_valid_and_json_round_trip():
    for cfg in SPACE.sample_many(300, seed=1):
        SPACE.validate(cfg)
        assert json.loads(json.dumps(cfg)) == cfg


def test_sampling_is_seeded():
    assert SPACE.sample_many(5, seed=3) == SPACE.sample_many(5, seed=3)
    assert SPACE.sample_many(5, seed=3) != SPACE.sample_many(5, seed=4)


def test_conditional_parameters_exist_only_with_their_choice():
    for cfg in SPACE.sample_many(200, seed=2):
        opt = cfg["optimizer"]
        assert ("momentum" in opt) == (opt["name"] == "sgd")
        assert ("beta1" in opt) == (opt["name"] == "adam")
        assert ("deep" in opt) == (opt.get("inner") == "a")
        for st_ in cfg["stages"]:
            assert ("expansion" in st_) == (st_["block"] == "InvertedResidual")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["stages"][0].__setitem__("channels", 9), "stages[0].channels: 9 is not on the grid"),
        (
            lambda c: c["stages"][0].update(block="InvertedResidual", kernel=3, expansion=9, se_ratio=0.0),
            "stages[0].expansion: 9 is outside [1, 6]",
        ),
        (lambda c: c.__setitem__("lr", 5.0), "lr: 5.0 is outside"),
        (lambda c: c.__setitem__("lr", "fast"), "lr: expected a number"),
        (lambda c: c["optimizer"].__setitem__("name", "lion"), 'optimizer.name: "lion" is not one of'),
        (lambda c: c.__setitem__("stages", []), "stages: 0 items, expected 1 to 4"),
        (lambda c: c.__setitem__("bogus", 1), "bogus: unknown parameter"),
        (lambda c: c.pop("lr"), "lr: missing"),
        (lambda c: c.__setitem__("epochs", 4), "epochs: must be the constant 3"),
        (lambda c: c.__setitem__("batch_size", True), "batch_size: expected an integer"),
    ],
)
def test_validation_names_the_path(mutate, message):
    cfg = SPACE.sample(seed=0)
    cfg["stages"][0] = {"block": "Conv", "kernel": 3, "activation": "relu", "channels": 16, "stride": 1}
    SPACE.validate(cfg)
    mutate(cfg)
    with pytest.raises(SpaceError, match=None) as e:
        SPACE.validate(cfg)
    assert message in str(e.value)


def test_switching_a_branch_leaves_stale_keys_invalid():
    cfg = SPACE.sample(seed=0)
    cfg["optimizer"] = {"name": "adam", "beta1": 0.9, "beta2": 0.99, "momentum": 0.9}
    with pytest.raises(SpaceError, match="optimizer.momentum: unknown parameter"):
        SPACE.validate(cfg)


def test_encoding_has_fixed_length_and_marks_active_dims():
    lengths = set()
    for cfg in SPACE.sample_many(100, seed=5):
        x, active = SPACE.encode(cfg)
        lengths.add(x.shape)
        assert x.shape == active.shape == (SPACE.n_dims,)
        assert np.all(x[~active] == 0)
        numeric = np.array([d.kind != "cat" for d in SPACE.dims])
        assert np.all((x[numeric & active] >= 0) & (x[numeric & active] <= 1))
        # Every always-present dimension is active.
        assert active[[not d.conditional for d in SPACE.dims]].all()
        n_stages = len(cfg["stages"])
        slot_dims = [i for i, d in enumerate(SPACE.dims) if d.key.startswith(f"stages[{n_stages}]")]
        assert not active[slot_dims].any()
    assert len(lengths) == 1


FLAT = Space(
    [
        Float("lr", 1e-5, 1.0, log=True),
        Float("beta", 0.0, 0.99),
        Float("fixed", 0.5, 0.5),
        Integer("width", 8, 512, log=True),
        Integer("depth", 1, 9, step=2),
        Categorical("act", ["relu", "gelu", 3, None]),
    ]
)


@pytest.mark.parametrize("space", [FLAT, SPACE], ids=["flat", "conditional"])
def test_encode_many_matches_one_by_one(space):
    # encode_many takes a column-wise path on flat spaces; it must agree with encode config by config.
    configs = space.sample_many(300, seed=11)
    X, A = space.encode_many(configs)
    one = [space.encode(c) for c in configs]
    np.testing.assert_allclose(X, np.stack([x for x, _ in one]), rtol=0, atol=1e-12)
    assert (A == np.stack([a for _, a in one])).all()
    with pytest.raises(SpaceError):
        space.encode_many([*configs[:3], {**configs[3], "lr": -1.0}])


def test_decode_inverts_encode():
    for cfg in SPACE.sample_many(200, seed=6):
        x, active = SPACE.encode(cfg)
        back = SPACE.decode(x)
        x2, active2 = SPACE.encode(back)
        np.testing.assert_allclose(x2, x, atol=1e-12)
        assert (active2 == active).all()
        assert back["stages"] == cfg["stages"]  # discrete parts come back exactly
        assert math.isclose(back["lr"], cfg["lr"], rel_tol=1e-9)


def test_decode_of_arbitrary_vectors_is_valid():
    rng = np.random.default_rng(0)
    hi = np.array([d.n_choices - 1 if d.kind == "cat" else 1.0 for d in SPACE.dims])
    for _ in range(200):
        SPACE.validate(SPACE.decode(rng.uniform(-0.5, 1.5, SPACE.n_dims) * hi))


def test_neighbours_are_valid_and_one_move_away():
    rng = np.random.default_rng(0)
    for cfg in SPACE.sample_many(30, seed=7):
        nbrs = SPACE.neighbours(cfg, rng)
        assert nbrs
        for n in nbrs:
            SPACE.validate(n)
            assert n != cfg
        kinds = {len(n["stages"]) - len(cfg["stages"]) for n in nbrs}
        assert 0 in kinds
        if len(cfg["stages"]) < 4:
            assert 1 in kinds
        if len(cfg["stages"]) > 1:
            assert -1 in kinds


def test_size_counts_discrete_configs():
    s = Space([Categorical("a", {"x": [Integer("k", 1, 3)], "y": []}), Integer("b", 0, 4, step=2)])
    # a=x: 3 values of k, a=y: 1; times 3 values of b
    assert s.size() == (3 + 1) * 3
    enumerated = {json.dumps(c, sort_keys=True) for c in s.sample_many(2000, seed=0)}
    assert len(enumerated) == 12
    r = Space([Repeat("r", 1, 2, [Categorical("c", [1, 2, 3])])])
    assert r.size() == 3 + 9
    assert SPACE.size() == math.inf


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_and_load_round_trip(tmp_path, suffix):
    path = tmp_path / f"space{suffix}"
    SPACE.save(path)
    loaded = Space.load(path)
    assert loaded.to_dict() == SPACE.to_dict()
    assert [d.key for d in loaded.dims] == [d.key for d in SPACE.dims]
    cfg = SPACE.sample(seed=9)
    loaded.validate(cfg)


@pytest.mark.parametrize(
    "text, message",
    [
        ("params: [{name: a, type: float, low: 1, high: 0}]", "params[0] (a): low 1 is above high 0"),
        ("params: [{name: a, type: flot, low: 1, high: 0}]", "type 'flot' is not one of"),
        ("params: [{name: a, type: int, low: 0, high: 4, step: 3}]", "must be a multiple of step"),
        ("params: [{name: a, type: float, low: 0, high: 1, log: true}]", "a log scale needs low > 0"),
        (
            "params: [{name: g, type: group, params: [{name: b, type: categorical, choices: []}]}]",
            "params[0] (g).params[0] (b): a categorical needs at least one choice",
        ),
        ("params: [{name: a, type: float, low: 0, high: 1, color: red}]", "unknown key 'color'"),
        ("params: [{name: a, type: float, low: 0}]", "missing key 'high'"),
        ("params: {a: 1}", "expected a list of parameters"),
        ("params: [1, 2]", "expected a mapping with name and type"),
        ("[unclosed", "not valid YAML"),
        ("params: [{name: a, type: constant, value: 1}, {name: a, type: constant, value: 2}]", "used twice"),
    ],
)
def test_malformed_space_files_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as e:
        Space.load(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_space_file(tmp_path):
    with pytest.raises(SpaceError, match="no such file"):
        Space.load(tmp_path / "nope.yaml")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_arbitrary_data_as_a_config_gives_space_errors_only(data):
    try:
        SPACE.validate(data)
    except SpaceError as e:
        assert "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_arbitrary_data_as_a_space_gives_space_errors_only(data):
    try:
        Space.from_dict(data, source="fuzz.yaml")
    except SpaceError as e:
        assert str(e).startswith("fuzz.yaml")
