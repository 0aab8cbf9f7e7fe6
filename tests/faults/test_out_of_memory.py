"""A trial that runs out of memory under RLIMIT_AS fails alone; the search goes on."""

from __future__ import annotations

import sys

import pytest

from fault_tools import assert_weights_load, integrity, logs_of, reaped, _search_argv, spawn, trials_of

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, RLIMIT_AS and process groups as Linux has them"
)

# `nas` with its address space capped at what it uses after the imports and the data, plus HEADROOM:
# enough for digits-sized trials, far too little for a 16384-channel stem (268 MB per activation).
_UNDER_RLIMIT = r"""
import resource, sys
import nas.cli, nas.cli_wiring, search_spaces.builder, trainers.runner, trainers.train
trainers.runner.cached_dataset("digits", None, 0, False, None)
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_AS)[1]))
sys.exit(nas.cli.main(sys.argv[2:]))
"""

_HUGE_OR_SMALL = """
params:
- name: stem
  type: group
  params:
  - {name: channels, type: categorical, choices: [8, 16384]}
  - {name: kernel, type: constant, value: 3}
  - {name: stride, type: constant, value: 1}
  - {name: activation, type: constant, value: relu}
- name: stages
  type: repeat
  min: 1
  max: 1
  params:
  - {name: block, type: constant, value: Conv}
  - {name: channels, type: constant, value: 8}
  - {name: stride, type: constant, value: 2}
  - {name: kernel, type: constant, value: 3}
- name: optimizer
  type: group
  params: [{name: name, type: constant, value: sgd}, {name: momentum, type: constant, value: 0.9}]
- {name: lr, type: float, low: 0.01, high: 0.1, log: true}
- {name: batch_size, type: constant, value: 64}
- {name: epochs, type: constant, value: 1}
"""


def test_a_trial_that_runs_out_of_memory_fails_alone(tmp_path):
    space, out, logs = tmp_path / "huge_or_small.yaml", tmp_path / "study", tmp_path / "logs"
    space.write_text(_HUGE_OR_SMALL)
    argv = [str(1 << 30), *_search_argv(space, out, 3, "--warmup", "3", "--seed", "2")]
    with reaped(spawn(argv, logs, "oom", prefix=[sys.executable, "-c", _UNDER_RLIMIT])) as proc:
        assert proc.wait(timeout=300) == 0, logs_of(logs, "oom")
    trials = trials_of(out)
    huge = [t for t in trials if t.config["stem"]["channels"] == 16384]
    small = [t for t in trials if t.config["stem"]["channels"] == 8]
    assert huge and small, "seed 2 should propose both sizes; pick another seed"
    for t in huge:
        assert t.status == "failed" and "memory" in t.error.lower() and "\n" not in t.error, (t.id, t.error)
    for t in small:
        assert t.status == "complete", (t.id, t.error)
    assert integrity(out) == "ok" and assert_weights_load(out) == len(small)
