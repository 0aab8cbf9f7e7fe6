"""The block registry: the built-in entries, what register refuses, and a toy block registered from this file
that the validator, builder, counter, size estimate, default space, a search and export all pick up.

The toy (toy_block.DWSep, a depthwise-separable conv with one key, ``mult``) is registered only inside the
``toy`` fixture; every test checks on the way out that the registry is back to the three built-in blocks.
"""

import ast
import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import toy_block
from nas.errors import ConfigError
from nas.space import Integer, Space
from search_spaces import build_model, count, registry, validate_arch
from search_spaces.blocks import BLOCKS, BottleNeck, ConvBlock, InvertedResidual, get_block
from search_spaces.costs import conv_cost, out_size
from search_spaces.default import SPACES_DIR, architecture_params, default_space, training_params
from search_spaces.registry import BlockDef, Key
from search_spaces.size import measure

BUILTIN = ("Conv", "BottleNeck", "InvertedResidual")


def _dwsep_count(a, h, w):
    c_in, mid = a["in_chs"], a["in_chs"] * a["mult"]
    m1, p1, ho, wo = conv_cost(h, w, c_in, mid, a["kernel_size"], a["stride"], g=c_in)
    m2, p2, _, _ = conv_cost(ho, wo, mid, a["out_chs"], 1)
    return m1 + m2, p1 + p2, ho, wo


def _dwsep_activations(a, h, w):
    ho, wo = out_size(h, a["kernel_size"], a["stride"]), out_size(w, a["kernel_size"], a["stride"])
    return ho * wo * (a["in_chs"] * a["mult"] + a["out_chs"])


TOY = BlockDef(
    "DWSep",
    toy_block.DWSep,
    count=_dwsep_count,
    activations=_dwsep_activations,
    keys={"mult": Key(1, low=1, high=2, integer=True)},
    space=lambda: [Integer("kernel", 3, 5, step=2), Integer("mult", 1, 2)],
)


@pytest.fixture(autouse=True)
def _registry_restored():
    yield
    assert registry.names() == BUILTIN, "a test left a block registered"


@pytest.fixture
def toy():
    with registry.registered(TOY) as block:
        yield block


def _flops(model: nn.Module, shape) -> dict:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, *shape))
    return {"macs": fc.get_total_flops() // 2, "params": sum(p.numel() for p in model.parameters())}


# --- the built-in entries ---------------------------------------------------------------------


def test_builtin_blocks_in_registration_order():
    assert registry.names() == BUILTIN
    assert dict(BLOCKS) == {"Conv": ConvBlock, "BottleNeck": BottleNeck, "InvertedResidual": InvertedResidual}
    assert registry.get("BottleNeck").keys == {"expansion": Key(4, low=1, integer=True)}
    assert set(registry.get("InvertedResidual").keys) == {"expansion", "se_ratio"}
    with pytest.raises(ConfigError, match=r"^unknown block 'Foo' \(expected Conv, BottleNeck, InvertedResidual\)$"):
        registry.get("Foo")
    with pytest.raises(ConfigError, match="unknown block"):
        registry.get(["Conv"])  # unhashable: still a ConfigError


@pytest.mark.parametrize("name", BUILTIN + ("toy",))
def test_block_modules_import_only_torch_and_sibling_block_modules(name):
    cls = toy_block.DWSep if name == "toy" else registry.get(name).module
    tree = ast.parse(inspect.getsource(sys.modules[cls.__module__]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] == "torch" for a in node.names), ast.unparse(node)
        elif isinstance(node, ast.ImportFrom):
            assert node.module.split(".")[0] == "torch" or node.module.startswith("search_spaces.blocks."), ast.unparse(
                node
            )


def test_every_builtin_block_counts_as_the_flop_counter_measures():
    """Each entry's counter against its own module, alone, over strides, kernels and a channel change."""
    extra = {"Conv": {}, "BottleNeck": {"expansion": 2}, "InvertedResidual": {"expansion": 3, "se_ratio": 0.5}}
    for name in BUILTIN:
        block = registry.get(name)
        for k, s, (c_in, c_out) in [(3, 1, (8, 8)), (5, 2, (4, 8)), (1, 2, (8, 4))]:
            if name == "BottleNeck" and k == 1:
                continue
            args = {"in_chs": c_in, "out_chs": c_out, "kernel_size": k, "stride": s, "act": "relu", **extra[name]}
            want = _flops(block.module(**args), (c_in, 7, 9))
            macs, params, ho, wo = block.count(args, 7, 9)
            assert (macs, params) == (want["macs"], want["params"]), (name, args)
            assert (ho, wo) == (out_size(7, k, s), out_size(9, k, s))


# --- register / unregister ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,error,message",
    [
        (dict(name="Conv"), ValueError, "'Conv' is already registered"),
        (dict(name="Dw-Sep"), ValueError, "must be a Python identifier"),
        (dict(name="x'\nimport os"), ValueError, "must be a Python identifier"),
        (dict(keys={"kernel": Key(3, low=1)}), ValueError, "'kernel' is a common stage key"),
        (dict(keys={"mult": 2}), ValueError, "mapped to a Key"),
        (dict(module=toy_block.DWSep(4, 4)), TypeError, "must be the nn.Module class"),
    ],
)
def test_register_refuses_bad_entries(change, error, message):
    with pytest.raises(error, match=message):
        registry.register(BlockDef(**{**TOY.__dict__, **change}))
    assert registry.names() == BUILTIN
    with pytest.raises(TypeError, match="expected a BlockDef"):
        registry.register(toy_block.DWSep)


def test_registered_is_undone_when_the_body_raises():
    with pytest.raises(RuntimeError, match="inside"):
        with registry.registered(TOY):
            assert registry.names() == BUILTIN + ("DWSep",) and BLOCKS["DWSep"] is toy_block.DWSep
            raise RuntimeError("inside")
    assert "DWSep" not in BLOCKS and len(BLOCKS) == 3
    registry.register(TOY)
    registry.unregister("DWSep")
    with pytest.raises(KeyError):
        registry.unregister("DWSep")


# --- a registered toy block, everywhere ---------------------------------------------------------

CFG = {
    "stem": {"channels": 8},
    "stages": [
        {"block": "DWSep", "channels": 16, "stride": 2, "repeats": 2},
        {"block": "DWSep", "channels": 24, "kernel": 5, "mult": 2},
    ],
}


def test_validator_reads_the_toys_keys(toy):
    arch = validate_arch(CFG, num_classes=10)
    first, second, third = [b for stage in arch.stages for b in stage]
    assert first.args == {"in_chs": 8, "out_chs": 16, "stride": 2, "kernel_size": 3, "act": "relu", "mult": 1}
    assert second.args["stride"] == 1 and second.args["in_chs"] == 16
    assert third.args["mult"] == 2 and third.args["kernel_size"] == 5
    bad = [
        ({"mult": 3}, r"stages\[1\]\.mult: 3 is outside \[1, 2\]"),
        ({"mult": 1.5}, r"stages\[1\]\.mult: expected an integer, got 1.5"),
        ({"mult": 0}, r"stages\[1\]\.mult: 0 must be positive"),
        (
            {"expansion": 2},
            r"stages\[1\]\.expansion: unknown key for a DWSep stage "
            r"\(expected block, channels, stride, repeats, kernel, activation, mult\)",
        ),
    ]
    for change, message in bad:
        cfg = {**CFG, "stages": [CFG["stages"][0], {**CFG["stages"][1], **change}]}
        with pytest.raises(ConfigError, match=message) as e:
            validate_arch(cfg, num_classes=10)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="expected Conv, BottleNeck, InvertedResidual, DWSep"):
        validate_arch({**CFG, "stages": [{"block": "Nope", "channels": 8}]}, num_classes=10)


def test_builder_counter_and_size_read_the_toys_entry(toy):
    model = build_model(CFG, num_classes=10, in_chans=3)
    assert get_block("DWSep") is toy_block.DWSep and isinstance(model.stages[1][0], toy_block.DWSep)
    assert model.stages[1][0].dw.conv.groups == 16 and model.stages[1][0].dw.conv.out_channels == 32
    for shape in [(3, 16, 16), (1, 7, 5)]:
        counted = count(CFG, input_shape=shape, num_classes=10)
        assert counted == _flops(build_model(CFG, num_classes=10, in_chans=shape[0]), shape)
    m = measure(CFG, input_shape=(3, 16, 16), num_classes=10)
    # stem 8 x 16 x 16; block 1: 8 x 8 x 8 depthwise + 16 x 8 x 8; block 2: 16 + 16 per pixel; block 3: 32 + 24.
    assert m["activations"] == 8 * 256 + (8 + 16) * 64 + (16 + 16) * 64 + (32 + 24) * 64


def test_default_space_takes_every_registered_block(toy):
    block = next(p for p in default_space().root.params if p.name == "stages").level.params[0]
    assert block.choices == [*BUILTIN, "DWSep"]
    assert [p.name for p in block.branches[-1].params] == ["kernel", "mult", "activation"]
    only = Space(architecture_params(blocks=("DWSep",)))
    assert all(st["block"] == "DWSep" for cfg in only.sample_many(20, seed=0) for st in cfg["stages"])
    with pytest.raises(ConfigError, match=r"^blocks: unknown block 'Nope'"):
        architecture_params(blocks=("Conv", "Nope"))


def test_default_space_is_the_shipped_one_once_the_toy_is_gone():
    with registry.registered(TOY):
        assert default_space().to_dict() != Space.load(SPACES_DIR / "cnn.yaml").to_dict()
    assert default_space().to_dict() == Space.load(SPACES_DIR / "cnn.yaml").to_dict()


def test_export_refuses_a_block_module_that_imports_more_than_torch():
    from nas.export_source import model_source

    local = BlockDef(
        "Local",
        _LocalBlock,
        count=_dwsep_count,
        activations=_dwsep_activations,
        space=lambda: [Integer("kernel", 3, 3)],
    )
    cfg = {"stem": {"channels": 8}, "stages": [{"block": "Local", "channels": 8}]}
    with registry.registered(local):
        build_model(cfg, num_classes=2)  # fine to build and search with
        with pytest.raises(ConfigError, match=r"block module .*test_registry .* imports 'import ast'") as e:
            model_source(cfg, input_shape=(1, 8, 8), mean=[0.5], std=[0.5], class_names=["a", "b"])
    assert "\n" not in str(e.value)


def test_export_refuses_a_block_class_nested_in_a_function():
    from nas.export_source import model_source

    class Nested(ConvBlock):
        pass

    nested = BlockDef(
        "Nested", Nested, count=_dwsep_count, activations=_dwsep_activations, space=lambda: [Integer("kernel", 3, 3)]
    )
    with registry.registered(nested), pytest.raises(ConfigError, match="not at the top level of its module"):
        model_source(
            {"stem": {"channels": 8}, "stages": [{"block": "Nested", "channels": 8}]},
            input_shape=(1, 8, 8),
            mean=[0.5],
            std=[0.5],
            class_names=["a", "b"],
        )


class _LocalBlock(ConvBlock):
    """A block defined in a module that imports pytest, json, ...: buildable, but export cannot copy it."""


# --- search, build, count and export the toy ------------------------------------------------------

FRESH = """
import sys
sys.path.insert(0, ".")
import torch
import model
net = model.load()
print(type(net.stages[0][0]).__name__, sorted(m for m in sys.modules if m.split(".")[0] in
      {"nas", "search_spaces", "trainers", "toy_block"}))
"""


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_toy_block_searched_built_counted_and_exported(toy, tmp_path):
    from sklearn.datasets import load_digits

    from nas import api
    from nas.export import export_study

    digits = load_digits()
    x = torch.tensor(digits.images[:300, None] / 16, dtype=torch.float32)
    y = torch.tensor(digits.target[:300])
    space = Space(
        architecture_params(
            blocks=("DWSep",),
            max_stages=2,
            channels=(8, 16),
            stem_channels=(8, 8),
            head_channels=(0, 0),
            max_repeats=1,
            allow_stem_stride=False,
        )
        + training_params(batch_sizes=(64,))
    )
    view = api.search(data=(x, y), space=space, out=tmp_path / "s", trials=3, warmup=2, epochs=1, seed=0)
    assert [t.status for t in view.trials] == ["complete"] * 3, [t.error for t in view.trials]
    assert all(st["block"] == "DWSep" for t in view.trials for st in t.config["stages"])
    best = view.best

    # Counted: the search's known MACs, the analytic count and the flop counter agree.
    model = build_model(best.config, num_classes=10, in_chans=1)
    assert any(isinstance(m, toy_block.DWSep) for m in model.modules())
    counted = count(best.config, input_shape=(1, 8, 8), num_classes=10)
    assert counted == _flops(model, (1, 8, 8))

    # Exported: model.py carries the toy's own source and reproduces the builder with the trial's weights.
    out = tmp_path / "e"
    export_study(tmp_path / "s", out=out, trial_id=best.id, retrain=False)
    source = (out / "model.py").read_text()
    assert inspect.getsource(toy_block.DWSep) in source and "'DWSep': DWSep," in source
    assert {
        n.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for n in (a.name for a in node.names)
    } == {"torch"}
    spec = importlib.util.spec_from_file_location("_toy_export", out / "model.py")
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    net = exported.load(str(out / "weights.pt"))
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    xs = x[:5] * 0.7
    with torch.no_grad():
        torch.testing.assert_close(net(xs), model.eval()(xs), atol=1e-6, rtol=0)
    assert json.loads((out / "config.json").read_text())["macs"] == counted["macs"]

    proc = subprocess.run([sys.executable, "-I", "-c", FRESH], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["DWSep", "[]"]
    assert Path(out / "model.ts").is_file()  # TorchScript scripted the copied classes too
