"""Fixtures shared by the trainer tests."""

import pytest
import torch

from trainers import load_dataset


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and a second spinning thread only hurts on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)
