"""Dump every config the optimiser proposes on a few seeded ask / tell loops, to prove a refactor changed nothing.

    PYTHONPATH=$PWD python bench/check_proposals.py --out /tmp/before.json   # on the old code
    PYTHONPATH=$PWD python bench/check_proposals.py --out /tmp/after.json --compare /tmp/before.json

The loops cover each path of ``Optimizer``: the scalar score with known costs, a ``Limit`` and a value ceiling
on a conditional space; a minimised objective without the output warp past 40 points; a batch ``ask(3)`` with failures and ``forget``; multi-fidelity with ``tell(...,
resource=)`` and ``predict_top``; the Pareto path (EHVI with fantasy pending, and the UCB variant with
variance-only pending) on a minimised objective. ``--compare`` exits 1 at the first proposal that differs
(floats compared to 1e-9 relative), naming the loop and the step. About a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.problems import conditional_space, conditional_value  # noqa: E402
from nas import Limit, Optimizer  # noqa: E402
from nas.fidelity import Fidelity  # noqa: E402
from nas.score import MnasScore  # noqa: E402
from nas.space import Categorical, Float, Integer, Space  # noqa: E402


def _cost(c: dict) -> dict:
    """Made-up known costs of a conditional-problem config: deterministic, vary with most parameters."""
    macs = 1e4 * (1 + c["n"]) * (1.5 + c["x"]) * {"a": 3.0, "b": 1.0, "c": 2.0}[c["family"]]
    params = 1e3 * (2 + c.get("a_depth", c.get("b_k", c.get("c_m", 1))))
    return {"macs": macs, "params": params}


def scalar() -> list:
    opt = Optimizer(
        conditional_space(),
        seed=1,
        n_warmup=6,
        known=_cost,
        constraints=[Limit("macs", 2.5e5)],
        score=MnasScore(targets={"macs": 1e5}),
        value_bounds=(0.0, 1.0),
    )
    out = []
    for _ in range(24):
        (c,) = opt.ask()
        out.append(c)
        opt.tell(c, conditional_value(c))
    out.append(["best", opt.best])
    return out


def batch() -> list:
    opt = Optimizer(conditional_space(), seed=2, n_warmup=5)
    out = []
    for step in range(7):
        cs = opt.ask(3)
        out.append(cs)
        for i, c in enumerate(cs):
            if step == 3 and i == 0:
                opt.tell_failed(c, "boom")
            elif step == 4 and i == 2:
                opt.forget(c)
            else:
                opt.tell(c, conditional_value(c) if i != 1 or step != 5 else math.nan)
    return out


def _mf_value(c: dict, r: float) -> float:
    return conditional_value(c) - 0.3 / r


def multifidelity() -> list:
    fid = Fidelity(1, 27, 3)
    opt = Optimizer(conditional_space(), seed=3, n_warmup=4, fidelity=fid)
    out = []
    for step in range(8):
        cs = opt.ask(2)
        out.append(cs)
        for c in cs:
            opt.tell(c, _mf_value(c, 1), resource=1)
        if step % 2 == 1:
            top = opt.best[0] if opt.best else cs[0]
            opt.add_pending(cs[0], resource=9)
            opt.tell(cs[0], _mf_value(cs[0], 9), resource=9)
            opt.tell(top, _mf_value(top, 27), resource=27)
        pred = opt.predict_top(cs)
        out.append(None if pred is None else [float(p) for p in pred])
    out.append(["best", opt.best])
    return out


def _small_space() -> Space:
    return Space(
        [Float("x", 0.0, 1.0), Integer("w", 1, 16), Categorical("kind", {"s": [], "t": [Float("t_gain", 0.0, 2.0)]})]
    )


def _small_known(c: dict) -> dict:
    return {"macs": 1e3 * c["w"] ** 2 * (1 + c.get("t_gain", 0.0)), "params": 100.0 * c["w"]}


def _small_loss(c: dict) -> float:
    return (c["x"] - 0.6) ** 2 + 1.0 / c["w"] + (0.1 if c["kind"] == "s" else 0.05 * c["t_gain"])


def pareto(acquisition: str, pending: str) -> list:
    opt = Optimizer(
        _small_space(),
        seed=4,
        n_warmup=5,
        known=_small_known,
        objectives={"loss": "minimize", "macs": "minimize", "params": "minimize"},
        pareto=acquisition,
        pending=pending,
        constraints=[Limit("macs", 2e5)],
    )
    out = []
    for _ in range(7):
        cs = opt.ask(2)
        out.append(cs)
        for c in cs:
            opt.tell(c, _small_loss(c))
    out.append(["front", [c for c, _, _ in opt.pareto_front()]])
    return out


def minimize_nowarp() -> list:
    """Past 40 observations without the warp: the path that adds points without refitting (GP.extend
    with the old targets unchanged)."""
    opt = Optimizer(
        _small_space(), direction="minimize", seed=5, n_warmup=4, warp="none", constraints=[lambda c: c["w"] != 3]
    )
    out = []
    for _ in range(48):
        (c,) = opt.ask()
        out.append(c)
        opt.tell(c, _small_loss(c))
    out.append(["best", opt.best])
    return out


LOOPS = {
    "scalar": scalar,
    "minimize_nowarp": minimize_nowarp,
    "batch": batch,
    "multifidelity": multifidelity,
    "pareto_ehvi": lambda: pareto("ehvi", "fantasy"),
    "pareto_ucb": lambda: pareto("ucb", "variance"),
}


def _same(a, b, path: str) -> str | None:
    if isinstance(a, float) and isinstance(b, float):
        return None if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        return next((d for k in a if (d := _same(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _same(x, y, f"{path}[{i}]"))), None)
    return None if a == b else f"{path}: {a!r} != {b!r}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="where to write the proposals (JSON)")
    ap.add_argument("--compare", help="a JSON written earlier: exit 1 where the proposals differ")
    ap.add_argument("--only", nargs="*", choices=sorted(LOOPS), help="run only these loops")
    args = ap.parse_args()
    got = {name: json.loads(json.dumps(fn())) for name, fn in LOOPS.items() if not args.only or name in args.only}
    Path(args.out).write_text(json.dumps(got, indent=1))
    if args.compare:
        want = json.loads(Path(args.compare).read_text())
        for name in got:
            if (d := _same(want[name], got[name], name)) is not None:
                print(f"DIFFERENT {d}")
                return 1
        print(f"same proposals in {len(got)} loops: {', '.join(got)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
