"""Any ``nas.space.Space`` as an Optuna define-by-run search space: ``suggest_config(trial, space)``.

Optuna keys a parameter by its name alone, so every parameter is named by its full path in the config,
with the branch it belongs to, exactly as the space names its encoding dimensions (``Space.dims[i].key``):

    lr                                   a top-level parameter
    optimizer.name                       a parameter inside a Group
    optimizer.momentum@name=sgd          a branch parameter: exists only when optimizer.name is sgd, and is
    optimizer.momentum@name=rmsprop      a different Optuna parameter from rmsprop's (other range, other meaning)
    stages#                              how many items a Repeat holds (an int in [min, max])
    stages[1].kernel@block=Conv          slot 1 of the Repeat, Conv branch

Parameters are suggested only where they exist in the config being built (a branch's parameters after
its choice, slot i of a Repeat only when the count exceeds i), so Optuna sees the conditional structure
the same way it sees any define-by-run objective. Constants are copied into the config, never suggested.

    >>> import optuna                                                            # doctest: +SKIP
    >>> study = optuna.create_study(direction="maximize")                        # doctest: +SKIP
    >>> trial = study.ask()                                                      # doctest: +SKIP
    >>> config = suggest_config(trial, space)     # a valid config of `space`    # doctest: +SKIP
    >>> study.tell(trial, f(config))                                             # doctest: +SKIP
"""

from __future__ import annotations

import json

from nas.space import Categorical, Constant, Float, Group, Integer, Repeat, Space


def suggest_config(trial, space: Space) -> dict:
    """The config ``trial`` (an ``optuna.Trial``) suggests for ``space``; it passes ``space.validate``."""
    return _level(trial, space.root, path="", branch="")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _level(trial, level, *, path: str, branch: str) -> dict:
    cfg: dict = {}
    for p in level.params:
        key = _join(path, p.name) + branch  # Space's own dimension key for this parameter
        if isinstance(p, Float):
            cfg[p.name] = trial.suggest_float(key, p.low, p.high, log=p.log)
        elif isinstance(p, Integer):
            # Space forbids log together with a step, as Optuna does.
            cfg[p.name] = trial.suggest_int(key, p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, Categorical):
            value = trial.suggest_categorical(key, list(p.choices))
            cfg[p.name] = value
            # Branch parameters sit beside the choice in the same dict (the space's config layout).
            cfg.update(_level(trial, p.branches[p.index(value)], path=path, branch=f"{branch}@{p.name}={value}"))
        elif isinstance(p, Constant):
            cfg[p.name] = json.loads(json.dumps(p.value))  # a fresh copy: configs never share lists
        elif isinstance(p, Group):
            cfg[p.name] = _level(trial, p.level, path=key, branch="")
        elif isinstance(p, Repeat):
            root = _join(path, p.name)
            n = trial.suggest_int(f"{root}#{branch}", p.min, p.max)
            cfg[p.name] = [_level(trial, p.level, path=f"{root}[{i}]{branch}", branch="") for i in range(n)]
        else:
            raise TypeError(
                f"suggest_config: {type(p).__name__} {p.name!r} is not a parameter kind the adapter "
                "knows; add it to bench/optuna_adapter.py"
            )
    return cfg


def check_adapter(space: Space, n: int = 200, seed: int = 0) -> dict:
    """Self-check on ``n`` configs from Optuna's RandomSampler: every config validates, and every Optuna
    parameter name is one of the space's dimension keys. Returns counts for the benchmark's log."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    keys = {d.key for d in space.dims}
    seen: set[str] = set()
    for _ in range(n):
        trial = study.ask()
        cfg = suggest_config(trial, space)
        space.validate(cfg)
        unknown = set(trial.params) - keys
        if unknown:
            raise AssertionError(f"Optuna parameters not in the space's dimensions: {sorted(unknown)}")
        seen |= set(trial.params)
        study.tell(trial, 0.0)
    return {"configs": n, "optuna_params_seen": len(seen), "space_dims": len(keys)}
