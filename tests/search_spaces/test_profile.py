"""search_spaces.profile on a tiny network: fvcore's MACs against the hand count, latency rows, the model's
mode and threads restored, and the text / HTML the report shows."""

import pytest
import torch

from search_spaces.profile import format_profile, model_section_html, profile_model

SHAPE = (3, 8, 8)


def _tiny():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )


def test_profile_counts_and_times_a_tiny_network():
    model = _tiny()
    model.train()
    prof = profile_model(model, SHAPE, batches=(1, 4), repeats=3, warmup=1)
    assert model.training  # profiling restored the mode
    # fvcore counts one multiply-add as one flop: conv 8*3*9*64 and linear 8*10; batch-norm (folded into
    # the conv at inference) and pooling are free, as in FlopCounterMode and our analytic count
    assert prof["fvcore_macs"] == 8 * 3 * 9 * 64 + 8 * 10
    assert prof["params"] == sum(p.numel() for p in model.parameters())
    assert prof["input_shape"] == list(SHAPE)
    for r in prof["latency"]:
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        assert r["per_image_ms"] == pytest.approx(r["median_ms"] / r["batch"])
        assert r["runs"] == 3
    assert [r["batch"] for r in prof["latency"]] == [1, 4]


def test_profile_restores_the_thread_count_and_says_what_it_used():
    before = torch.get_num_threads()
    prof = profile_model(_tiny(), SHAPE, batches=(1,), repeats=1, warmup=0, threads=2)
    assert prof["threads"] == 2 and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        profile_model(_tiny(), SHAPE, repeats=0)


def test_text_and_html_use_si_numbers_and_escape():
    prof = profile_model(_tiny(), SHAPE, batches=(1,), repeats=1, warmup=0)
    prof["flop_table"] = "<b>table</b>"
    text = format_profile(prof)
    assert text.startswith("input (3, 8, 8), params 330, fvcore MACs (batch 1) 13.9K, CPU threads")
    html = model_section_html(prof)
    assert "params 330; fvcore MACs at batch 1: 13.9K" in html and "&lt;b&gt;table&lt;/b&gt;" in html


def test_a_model_fvcore_cannot_trace_is_still_timed():
    class Odd(torch.nn.Module):
        def forward(self, x):
            return x.sum() if float(x.sum()) > 0 else x.mean()  # data-dependent control flow

    prof = profile_model(Odd(), SHAPE, batches=(1,), repeats=1, warmup=0)
    assert len(prof["latency"]) == 1
    assert prof["fvcore_macs"] is None or prof["fvcore_macs"] == 0
    assert "params 0, fvcore MACs (batch 1) " in format_profile(prof)
