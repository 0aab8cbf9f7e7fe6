"""Studies the fault tests copy and break (made once per module)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fault_tools import call, _search_argv


@pytest.fixture(scope="module")
def tiny_space_dict(tiny_space) -> dict:
    return yaml.safe_load(tiny_space.read_text())


@pytest.fixture(scope="module")
def small_study(tmp_path_factory, tiny_space) -> Path:
    """Two really trained digits trials (in-process, a few seconds)."""
    out = tmp_path_factory.mktemp("small") / "study"
    code, _, err = call(_search_argv(tiny_space, out, 2, "--warmup", "2", "--seed", "1"))
    assert code == 0, err
    return out
