"""Fixtures shared across the test folders."""

from pathlib import Path

import pytest

from nas.space import Constant, Space
from search_spaces.default import default_space


@pytest.fixture(scope="module")
def tiny_space(tmp_path_factory) -> Path:
    """The default space shrunk so a digits trial trains in about a second, saved as YAML for --space."""
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    space = default_space(
        max_stages=2,
        channels=(8, 16),
        stem_channels=(8, 16),
        head_channels=(0, 32),
        max_repeats=1,
        batch_sizes=(64, 128),
    )
    # Epochs are no longer searched; a constant `epochs` (an old space's key) keeps these trials at one epoch
    # while the search passes no length of its own (trainers.runner.epochs_for).
    Space(list(space.root.params) + [Constant("epochs", 1)], name="tiny").save(path)
    return path
