"""Denormal flushing: the probe sees the mode, the context turns it on and gives the caller's mode back."""

import pytest
import torch

from search_spaces.numerics import denormals_flushed, flush_denormals


@pytest.fixture(autouse=True)
def caller_mode_off():
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def test_probe_tells_the_two_modes_apart():
    assert not denormals_flushed()
    torch.set_flush_denormal(True)
    assert denormals_flushed()


def test_context_flushes_inside_and_restores_off_after():
    x = torch.full((1 << 16,), 1e-39)
    with flush_denormals() as on:
        assert on and denormals_flushed()
        assert torch.count_nonzero(x * 1.5) == 0  # arithmetic on subnormals really gives zeros
    assert not denormals_flushed()
    assert torch.count_nonzero(x * 1.5) == len(x)


def test_context_keeps_a_caller_who_already_flushes():
    torch.set_flush_denormal(True)
    with flush_denormals():
        assert denormals_flushed()
    assert denormals_flushed()


def test_disabled_context_changes_nothing():
    with flush_denormals(False) as on:
        assert not on and not denormals_flushed()
    assert not denormals_flushed()


def test_mode_is_restored_when_the_block_raises():
    with pytest.raises(RuntimeError), flush_denormals():
        raise RuntimeError("boom")
    assert not denormals_flushed()
