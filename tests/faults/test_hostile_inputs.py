"""Hostile input files and options, fuzzed with hypothesis through `nas.cli.main` in-process (space files,
`nas inspect` configs, `nas search` options and spaces): each ends in our own one-line error (exit 2) or a
normal finish, never a traceback."""

from __future__ import annotations

import copy
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, example, given, strategies as st

from fault_tools import (
    address_space_guard,
    assert_our_error,
    call,
    _Enough,
    fake_training,
    FUZZ,
    FUZZ_SEARCH,
    _nested_repeats,
    NUM_TEXT,
    SMALL_CONFIG,
    _space_file,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, RLIMIT_AS and process groups as Linux has them"
)

SPACE_KEYS = [
    "name",
    "type",
    "low",
    "high",
    "log",
    "step",
    "choices",
    "params",
    "value",
    "min",
    "max",
    "description",
    "float",
    "int",
    "categorical",
    "constant",
    "group",
    "repeat",
]

CONFIG_KEYS = [
    "stem",
    "stages",
    "head",
    "classifier",
    "block",
    "channels",
    "kernel",
    "stride",
    "repeats",
    "expansion",
    "se_ratio",
    "activation",
    "pool",
    "dropout",
    "num_classes",
    "Conv",
    "BottleNeck",
    "InvertedResidual",
    "relu",
    "max",
    "none",
    "config",
]

NASTY_NUMBERS = [
    0,
    -1,
    1,
    2,
    3,
    7,
    2**31,
    2**63,
    -(2**63) - 1,
    10**30,
    -(10**30),
    1e308,
    -1e-308,
    0.5,
    float("nan"),
    float("inf"),
    float("-inf"),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from(NASTY_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(SPACE_KEYS + CONFIG_KEYS + ["__import__('os').system('true')", "", "\n", "a.b", "x[0]"]),
)

values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(SPACE_KEYS + CONFIG_KEYS) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def mutate(data, doc, keys: list[str]):
    """1-3 random edits of a valid document: replace a value, delete a key / item, add an unknown or
    known key, bury a value under deep nesting, or swap a value's type."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = list(_paths(doc))
        path = data.draw(st.sampled_from(paths), label="path")
        op = data.draw(st.sampled_from(["replace", "delete", "add", "nest", "stringify"]), label="op")
        if not path:
            if op == "replace":
                doc = data.draw(values, label="new document")
            continue
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        if op == "replace":
            parent[last] = data.draw(values, label="value")
        elif op == "delete":
            del parent[last]
        elif op == "add" and isinstance(parent[last], dict):
            parent[last][data.draw(st.sampled_from(keys) | st.text(max_size=5), label="key")] = data.draw(values)
        elif op == "nest":
            depth = data.draw(st.sampled_from([1, 2, 40, 200]), label="depth")
            v = parent[last]
            for _ in range(depth):
                v = data.draw(st.sampled_from([[v], {"params": [v]}, {"name": "n", "type": "group", "params": [v]}]))
            parent[last] = v
        elif op == "stringify":
            parent[last] = json.dumps(parent[last], allow_nan=True)
    return doc


def dump(doc, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, allow_nan=True)
    try:
        return yaml.safe_dump(doc, sort_keys=False)
    except (yaml.YAMLError, RecursionError):
        return json.dumps(doc, allow_nan=True)  # JSON is YAML too


def _alias_bomb(levels: int) -> str:
    """YAML 'billion laughs' reaching a constant's value: 9**levels strings from a few hundred bytes."""
    names = "abcdefghijkl"[:levels]
    anchors = ["&a [x,x,x,x,x,x,x,x,x]"] + [f"&{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip(names, names[1:])]
    return f"description: [{', '.join(anchors)}]\nparams: [{{name: x, type: constant, value: *{names[-1]}}}]\n"


RAW_TEXTS = [
    "",
    "   \n",
    "params:",
    "params: 5",
    "[",
    "{",
    "{{{{",
    "params: [" * 3000,
    "- " * 3000 + "x",
    "params: !!python/object/apply:os.system ['true']",
    "\t- bad indent\n  -x",
    "\x00\x01",
    "null",
    "[]",
    "params: [{name: x, type: float, low: 1, high: 0}]",
    "params: [{name: x, type: int, low: 0, high: 99999999999999999999999999, log: true}]",
    _nested_repeats(4),
    _alias_bomb(9),
]


def check_space_command(text, fmt: str) -> None:
    path = _space_file(text, fmt)
    try:
        code, out, err = call(["space", path])
    finally:
        path.unlink()
    if code == 0:
        assert out.strip() and not err.strip(), err
    else:
        assert_our_error(code, err, str(path))


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["yaml", "json"]))
def test_fuzz_space_file_mutations(data, fmt, tiny_space_dict):
    check_space_command(dump(mutate(data, tiny_space_dict, SPACE_KEYS), fmt), fmt)


@FUZZ
@given(
    text=st.one_of(
        st.sampled_from(RAW_TEXTS),
        st.text(max_size=200),
        st.binary(max_size=100),
        values.map(lambda v: dump(v, "yaml")),
    ),
    fmt=st.sampled_from(["yaml", "json"]),
)
def test_fuzz_space_file_raw_text(text, fmt):
    check_space_command(text, fmt)


@pytest.mark.parametrize(
    "text, needle",
    [
        (_nested_repeats(4), "dimensions"),  # 64**4 slots: hung for minutes and took GBs before MAX_DIMS
        (_alias_bomb(9), "aliases"),  # 387M strings through json.dumps before MAX_NODES
        ("params: [{name: x, type: [], low: 0, high: 1}]\n", "type"),  # unhashable type: was a TypeError
        ("params: [" * 5000 + "]" * 5000, "not valid YAML"),
    ],
    ids=["nested_repeats", "alias_bomb", "unhashable_type", "deep_brackets"],
)
def test_space_bombs_fail_fast_with_one_line(text, needle):
    path = _space_file(text, "yaml")
    try:
        t0 = time.perf_counter()
        code, _, err = call(["space", path])
        took = time.perf_counter() - t0
    finally:
        path.unlink()
    assert_our_error(code, err, str(path), needle)
    assert took < 5.0, f"took {took:.1f} s"


def _slow_but_allowed(config, shape) -> bool:
    """A valid config that inspect would build and run for real but slowly (huge, yet under its caps):
    not hostile, just expensive, so the fuzzer leaves it out."""
    from nas.errors import ConfigError
    from search_spaces.arch import validate_arch
    from search_spaces.counting import count
    from search_spaces.inspect import MAX_MACS, MAX_PARAMS

    try:
        arch = validate_arch(config, num_classes=10, in_chans=shape[0])
        c = count(config, input_shape=shape, num_classes=10)
    except (ConfigError, TypeError, ValueError):
        return False
    blocks = sum(len(s) for s in arch.stages)
    if c["params"] > MAX_PARAMS or c["macs"] > MAX_MACS:
        return False  # refused before anything is built: must be fast
    return blocks > 64 or c["params"] > 2e6 or c["macs"] > 2e8


def check_inspect(config_text: str, shape_text: str, extra=()) -> None:
    path = _space_file(config_text, "json")
    try:
        with address_space_guard():
            code, out, err = call(["inspect", path, f"--input-shape={shape_text}", *extra])
    finally:
        path.unlink()
    if code == 0:
        assert out.strip() and "Traceback" not in err
    else:
        assert_our_error(code, err)


@FUZZ
@given(
    data=st.data(),
    shape=st.sampled_from(["1,8,8", "3,16,16"]),
    as_json=st.booleans(),
    classes=st.none() | st.sampled_from(["1", "10", "0", "-3", "1e3", "x", "4294967296", str(10**30)]),
)
def test_fuzz_inspect_config_mutations(data, shape, as_json, classes):
    config = mutate(data, SMALL_CONFIG, CONFIG_KEYS)
    dims = tuple(int(v) for v in shape.split(","))
    assume(not _slow_but_allowed(config, dims))
    extra = (["--json"] if as_json else []) + ([f"--num-classes={classes}"] if classes else [])
    check_inspect(json.dumps(config, allow_nan=True), shape, extra)


@FUZZ
@given(
    text=st.one_of(
        st.sampled_from(
            [
                "",
                "{",
                "[]",
                "null",
                "1e999",
                "[" * 5000,
                '{"stem": "x"}',
                '{"config": {"stem": 1}}',
                '{"config": "x", "stem": null}',
            ]
        ),
        st.text(max_size=100),
        values.map(lambda v: json.dumps(v, allow_nan=True)),
    ),
    shape=st.one_of(
        st.sampled_from(
            ["1,8,8", "3,224", "0,8,8", "3,8,8,8", "1x8x8", " 1,8,8", "-1,8,8", "1,8,99999999999999999999", "1,,8", ""]
        ),
        st.text(max_size=12),
    ),
)
def test_fuzz_inspect_raw_text_and_input_shape(text, shape):
    try:
        dims = tuple(int(p) for p in shape.split(","))
    except ValueError:
        dims = ()
    assume(not (len(dims) == 3 and min(dims) >= 1 and dims[1] * dims[2] > 64 * 64))  # valid and big: slow
    check_inspect(text, shape)


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda c: c["stem"].update(channels=10**12), "too large"),  # was RuntimeError: can't allocate
        (lambda c: c["stem"].update(channels=10**20), "too large"),  # was TypeError: overflow in torch.empty
        (lambda c: c["stem"].update(kernel=1_000_001), "too large"),
        (lambda c: c["stages"][0].update(repeats=10**9), "above 256"),  # was MemoryError (or GBs)
    ],
    ids=["channels_1e12", "channels_1e20", "kernel_1e6", "repeats_1e9"],
)
def test_inspect_refuses_huge_configs_before_building(tmp_path, change, needle):
    config = copy.deepcopy(SMALL_CONFIG)
    change(config)
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(config))
    t0 = time.perf_counter()
    with address_space_guard():
        code, _, err = call(["inspect", path, "--input-shape", "1,8,8"])
    assert_our_error(code, err, str(path), needle)
    assert time.perf_counter() - t0 < 10


def test_inspect_deeply_nested_json_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)  # was RecursionError out of json.loads
    code, _, err = call(["inspect", path])
    assert_our_error(code, err, str(path), "not valid JSON")


def test_inspect_out_of_memory_is_one_line(tmp_path):
    """Under the caps (2.3e8 parameters, 900 MB) but above what this process may allocate."""
    config = copy.deepcopy(SMALL_CONFIG)
    config["stem"]["channels"] = 5000
    config["stages"] = [dict(config["stages"][0], channels=5000, stride=1)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(config))
    with address_space_guard(headroom=256 << 20):
        code, _, err = call(["inspect", path, "--input-shape", "1,8,8"])
    assert_our_error(code, err, str(path), "not enough memory")


def check_search(space: Path, extra: list[str]) -> None:
    """A search with hostile `extra` options (or space) either ends in our one-line error before any trial,
    or runs (with the fake objective) to exit 0 / to _Enough. One trial by default: the warm-up samples it
    at random, so no GP fit slows the fuzzing unless the fuzzed options ask for one."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz_study_"))
    try:
        with fake_training() as calls:
            try:
                code, out, err = call(
                    [
                        "search",
                        "--dataset",
                        "digits",
                        "--space",
                        space,
                        "--trials",
                        "1",
                        "--fidelity",
                        "off",
                        "--max-epochs",
                        "2",
                        "--quiet",
                        "--out",
                        folder / "s",
                        *extra,
                    ]
                )
            except _Enough:
                return
        if code == 0:
            assert "Traceback" not in err and out.strip()
        else:
            assert_our_error(code, err)
            assert not calls, f"failed after {len(calls)} trial(s) had started: {err}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


SCORE_TEXT = st.one_of(
    st.builds(
        lambda name, kv: name if kv is None else f"{name}:{','.join(kv)}",
        st.sampled_from(["acc", "mnas", "weighted", "", "MNAS", "mnas ", "x"]) | st.text(max_size=5),
        st.none()
        | st.lists(
            st.builds(
                lambda k, v: f"{k}={v}",
                st.sampled_from(["macs", "params", "alpha", "beta", "ref_macs", "ref_params", "", "x"])
                | st.text(max_size=4),
                NUM_TEXT,
            ),
            max_size=4,
        ),
    ),
    st.text(max_size=20),
)

SEARCH_OPTIONS = {
    "--trials": NUM_TEXT,
    "--max-macs": NUM_TEXT,
    "--max-params": NUM_TEXT,
    "--time-budget": NUM_TEXT,
    "--seed": NUM_TEXT,
    "--warmup": NUM_TEXT,
    "--score": SCORE_TEXT,
}


@FUZZ_SEARCH
@given(data=st.data())
@example(data=None)  # the plain search itself must pass (the fake objective, one trial)
def test_fuzz_search_options(data, tiny_space):
    extra = []
    if data is not None:
        names = data.draw(st.lists(st.sampled_from(sorted(SEARCH_OPTIONS)), min_size=1, max_size=3, unique=True))
        extra = [f"{n}={data.draw(SEARCH_OPTIONS[n], label=n)}" for n in names]
    check_search(tiny_space, extra)


@FUZZ_SEARCH
@given(data=st.data(), fmt=st.sampled_from(["yaml", "json"]))
def test_fuzz_search_space_file(data, fmt, tiny_space_dict):
    path = _space_file(dump(mutate(data, tiny_space_dict, SPACE_KEYS), fmt), fmt)
    try:
        check_search(path, [])
    finally:
        path.unlink()
