"""NAS-Bench-201 as a look-up problem: one row of the table is one "trial", at no training cost.

The table (15,625 cells x CIFAR-10/100/ImageNet16-120 accuracies and 27 latency columns) lives outside
the repository, at ``../shared/benchmarks/nb201/nb201_merged.csv`` from the project root; ``--nb201
PATH`` or the ``LIGHTNAS_NB201`` environment variable point elsewhere. It is read, never copied.

Notation
    edge_j_i   the operation on the edge from node i to node j of the cell (j = 1..3, i < j), in the
               order of the table's ``arch_str``: 1_0, 2_0, 2_1, 3_0, 3_1, 3_2
    config_id  six digits, the index in ``OPS`` of each edge's operation, in that order

    >>> nb = load_nb201()                                         # doctest: +SKIP
    >>> row = nb.lookup({e: "nor_conv_3x3" for e in EDGES})        # doctest: +SKIP
    >>> row["val"], row["test"], row["lat_ms_pixel3"]              # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas.errors import NasError
from nas.space import Categorical, Space

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
VAL = "cifar10valid_val_acc_mean"  # what a search optimises (mean over seeds of the validation split)
TEST = "cifar10_test_acc"  # reported for the pick only, never seen by the search
ENV = "LIGHTNAS_NB201"
DEFAULT_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "nb201" / "nb201_merged.csv"


class NB201Missing(NasError):
    """The table is not where we looked; benchmarks skip with this message."""


def nb201_space() -> Space:
    """Six categorical edges of five operations each: 5^6 = 15,625 configs, none conditional."""
    return Space([Categorical(e, list(OPS)) for e in EDGES], name="nb201")


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$LIGHTNAS_NB201``, else the shared default; NB201Missing if that file is absent."""
    chosen = path or os.environ.get(ENV) or DEFAULT_PATH
    p = Path(chosen).expanduser()
    if not p.is_file():
        how = "--nb201 PATH" if path else f"${ENV}" if os.environ.get(ENV) else "the default path"
        raise NB201Missing(
            f"NAS-Bench-201 table not found at {p} (from {how}); pass --nb201 PATH or set {ENV} to nb201_merged.csv"
        )
    return p


@dataclass
class NB201:
    """The table, indexed by config: ``val``, ``test`` and every ``lat_ms_*`` column as (15625,) arrays."""

    path: Path
    config_ids: list  # (n,) six-digit strings, row order of the file
    columns: dict  # name -> (n,) float array
    _row: dict = field(default_factory=dict, repr=False)  # config_id -> row

    def __post_init__(self):
        self._row = {cid: i for i, cid in enumerate(self.config_ids)}

    @property
    def space(self) -> Space:
        return nb201_space()

    @property
    def latency_columns(self) -> list:
        return [c for c in self.columns if c.startswith("lat_ms_")]

    def row(self, config: dict) -> int:
        cid = "".join(str(OPS.index(config[e])) for e in EDGES)
        return self._row[cid]

    def lookup(self, config: dict) -> dict:
        """``{"val", "test", "lat_ms_<device>"...}`` of a config's row."""
        i = self.row(config)
        out = {"val": float(self.columns[VAL][i]), "test": float(self.columns[TEST][i])}
        out.update({c: float(self.columns[c][i]) for c in self.latency_columns})
        return out

    def config(self, i: int) -> dict:
        return {e: OPS[int(d)] for e, d in zip(EDGES, self.config_ids[i])}

    @property
    def best_val(self) -> float:
        return float(self.columns[VAL].max())

    @property
    def best_test(self) -> float:
        return float(self.columns[TEST].max())

    @property
    def test_of_best_val(self) -> float:
        """Test accuracy of the architecture with the best validation accuracy (what a perfect search picks)."""
        return float(self.columns[TEST][int(np.argmax(self.columns[VAL]))])


def load_nb201(path: str | os.PathLike | None = None) -> NB201:
    """Read the table (about 1 s). Raises NB201Missing when absent, NasError when malformed."""
    import pandas as pd

    p = resolve_path(path)
    df = pd.read_csv(p, dtype={"config_id": str})
    need = {"config_id", VAL, TEST}
    if not need <= set(df.columns):
        raise NasError(
            f"{p}: missing columns {sorted(need - set(df.columns))}; expected the merged NAS-Bench-201 "
            "table described in its README"
        )
    ids = df["config_id"].str.zfill(6).tolist()  # a leading "0" (edge 1_0 = none) may be lost by other readers
    if len(set(ids)) != len(OPS) ** len(EDGES) or any(len(i) != 6 or set(i) - set("01234") for i in ids):
        raise NasError(f"{p}: expected {len(OPS) ** len(EDGES)} distinct six-digit config_ids over 0-4")
    cols = [VAL, TEST] + [c for c in df.columns if c.startswith("lat_ms_")]
    return NB201(path=p, config_ids=ids, columns={c: df[c].to_numpy(dtype=float) for c in cols})
