"""Reports of a study: trial tables, the Pareto front, plots and one self-contained HTML page.

Reads `study.db` read-only (works while `nas search` is still writing) and writes only report files.
Imports no torch and nothing from search_spaces: the model section is a callable the CLI passes in.

>>> view = load_study("results/x")                # doctest: +SKIP
>>> print(format_summary(view))                   # doctest: +SKIP
>>> write_report("results/x")                     # doctest: +SKIP
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # the Figure API uses Agg for PNGs and never touches pyplot's global state

from nas.errors import StudyError
from nas.fsutil import atomic_write_bytes, atomic_write_text
from nas.pareto import pareto_mask
from nas.storage import Storage
from nas import report_mf
from nas.trial import COMPLETE, FAILED, INFEASIBLE, PAUSED, STATUSES, Trial

DB_NAME = "study.db"
TOP_EFFECTS = 8  # parameters shown in param_effects.png: a 2 x 4 grid stays readable
_FIXED = ("id", "status", "value", "score", "macs", "params")
_MF_FIXED = ("rung", "resource")  # multi-fidelity studies only: the last rung index and the epochs trained
_TAIL = ("duration", "error", "seed", "attempts")
_FINISHED = (COMPLETE, FAILED, INFEASIBLE, PAUSED)  # paused: a rung value is recorded (multi-fidelity)

ModelSection = Callable[[Trial], dict]


# --- flattening ---------------------------------------------------------------------------------

def _flatten(obj: Any, prefix: str, out: dict, *, keep_lists: bool) -> dict:
    """Nested dicts -> dotted keys ("optimizer.name"); lists -> ".0", ".1" (or dropped)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, keep_lists=keep_lists)
    elif isinstance(obj, (list, tuple)):
        if keep_lists:
            for i, v in enumerate(obj):
                _flatten(v, f"{prefix}.{i}" if prefix else str(i), out, keep_lists=keep_lists)
    else:
        out[prefix] = obj
    return out


def _nested_order(keys: list[str]) -> list[str]:
    """Sort dotted keys so siblings stay together in first-appearance order and list indices count up:
    a late trial's "stages.2.block" lands after "stages.1.*", not after "weight_decay"."""
    rank: dict[tuple, int] = {}
    for k in keys:
        parts = k.split(".")
        for i, part in enumerate(parts):
            rank.setdefault((tuple(parts[:i]), part), len(rank))

    def key(k: str) -> tuple:
        parts = k.split(".")
        return tuple((int(p), 0) if p.isdigit() else (0, rank[(tuple(parts[:i]), p)])
                     for i, p in enumerate(parts))
    return sorted(keys, key=key)


def _abbrev(block: str) -> str:
    # "InvertedResidual" -> "IR", "BottleNeck" -> "BN"; one-word names ("Conv") stay whole.
    caps = "".join(c for c in block if c.isupper())
    return caps if len(caps) >= 2 else block


def block_summary(config: dict) -> str:
    """One short line per architecture: `Conv32s2-IR64x2` (block, channels, s<stride> if not 1, x<repeats> if not 1)."""
    parts = []
    for st in config.get("stages") or []:
        if not isinstance(st, dict):
            continue
        s = f"{_abbrev(str(st.get('block', '?')))}{st.get('channels', '')}"
        if st.get("stride", 1) != 1:
            s += f"s{st['stride']}"
        if st.get("repeats", 1) != 1:
            s += f"x{st['repeats']}"
        parts.append(s)
    return "-".join(parts)


# --- the view -----------------------------------------------------------------------------------

@dataclass
class StudyView:
    """A snapshot of a study, read once. Tables are pandas DataFrames; `best` is a Trial."""
    path: Path
    meta: dict
    trials: list[Trial]
    _frame: pd.DataFrame | None = field(default=None, repr=False)
    _config_columns: list[str] = field(default_factory=list, repr=False)
    _front_cache: pd.DataFrame | None = field(default=None, repr=False)  # with posterior: one GP fit per view

    @property
    def direction(self) -> str:
        d = self.meta.get("direction", "maximize")
        if d not in ("maximize", "minimize"):
            raise StudyError(f"{self.path}: meta 'direction' is {d!r}; it must be 'maximize' or 'minimize'")
        return d

    @property
    def sign(self) -> float:
        """+1 when larger objective is better."""
        return 1.0 if self.direction == "maximize" else -1.0

    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in STATUSES}
        for t in self.trials:
            c[t.status] = c.get(t.status, 0) + 1
        return {k: v for k, v in c.items() if v}

    @property
    def finished(self) -> bool:
        return any(t.status in _FINISHED for t in self.trials)

    @staticmethod
    def objective(t: Trial) -> float | None:
        """What "best" ranks by: the score, or the value when the study stores no score."""
        return t.score if t.score is not None else t.value

    def ranked(self) -> list[Trial]:
        """Complete trials with an objective, best first (ties: lower id first)."""
        done = [t for t in self.trials if t.status == COMPLETE and self.objective(t) is not None]
        return sorted(done, key=lambda t: (-self.sign * self.objective(t), t.id))

    @property
    def best(self) -> Trial | None:
        r = self.ranked()
        return r[0] if r else None

    def trials_dataframe(self) -> pd.DataFrame:
        """One row per trial: id, status, value, score, macs, params, flat metrics, blocks, duration, error,
        seed, attempts, then the flat config ("optimizer.name", "stages.0.block", ...).

        Metric lists (curves) are left out. A config key that clashes with a column above becomes
        "config.<key>".
        """
        if self._frame is None:
            self._frame, self._config_columns = self._build_frame()
        return self._frame.copy()

    @property
    def config_columns(self) -> list[str]:
        self.trials_dataframe()
        return list(self._config_columns)

    def _build_frame(self) -> tuple[pd.DataFrame, list[str]]:
        metric_cols: dict[str, None] = {}  # dicts as ordered sets: first appearance wins
        config_cols: dict[str, None] = {}
        rows = []
        has_stages = any(isinstance(t.config.get("stages"), list) for t in self.trials)
        for t in self.trials:
            m = _flatten(t.metrics or {}, "", {}, keep_lists=False)
            c = _flatten(t.config, "", {}, keep_lists=True)
            metric_cols.update(dict.fromkeys(k for k in m if k not in _FIXED))
            config_cols.update(dict.fromkeys(c))
            rows.append((t, m, c))
        mf = any(t.resource is not None for t in self.trials)
        head = _FIXED + (_MF_FIXED if mf else ())
        metric_cols = {k: None for k in metric_cols if k not in head}
        fixed = list(head) + list(metric_cols) + (["blocks"] if has_stages else []) + list(_TAIL)
        rename = {k: (f"config.{k}" if k in fixed else k) for k in _nested_order(list(config_cols))}
        columns = fixed + list(rename.values())
        records = []
        for t, m, c in rows:
            r = {k: getattr(t, k) for k in head}
            r.update({k: v for k, v in m.items() if k not in head})
            if has_stages:
                r["blocks"] = block_summary(t.config)
            r.update(duration=t.duration, error=t.error, seed=t.seed, attempts=t.attempts)
            r.update({rename[k]: v for k, v in c.items()})
            records.append(r)
        df = pd.DataFrame.from_records(records, columns=columns)
        for col in ("value", "score", "duration"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        for col in ("macs", "params"):
            df[col] = df[col].astype("Int64")  # nullable: failed trials may have no count
        return df, list(rename.values())

    def pareto_objectives(self) -> list[tuple[str, bool]]:
        """(column, maximize) pairs of the front: value, plus macs and params where the study has them."""
        objs = [("value", self.direction == "maximize")]
        for col in ("macs", "params"):
            if any(getattr(t, col) is not None for t in self.trials if t.status == COMPLETE):
                objs.append((col, False))
        return objs

    def pareto_front(self, *, posterior: bool = True) -> pd.DataFrame:
        """Complete trials not dominated on (value max, macs min, params min), cheapest first.

        Uses macs / params only where the study has them; a complete trial missing a used one is left out.
        With ``posterior``, columns ``post_mean`` and ``post_std``: the value a GP refitted on the complete
        trials predicts for each member (``nas.front``).
        """
        if not posterior:
            return self._front()
        if self._front_cache is None:
            from nas.front import front_posterior

            front = self._front()
            front["post_mean"], front["post_std"] = front_posterior(self, front)
            self._front_cache = front
        return self._front_cache.copy()

    def _front(self) -> pd.DataFrame:
        df = self.trials_dataframe()
        objs = self.pareto_objectives()
        cols = [c for c, _ in objs]
        done = df[(df["status"] == COMPLETE)].dropna(subset=cols)
        if done.empty:
            return done.reset_index(drop=True)
        mask = pareto_mask(done[cols].to_numpy(dtype=float), maximize=[mx for _, mx in objs])
        front = done[mask]
        order = cols[1:] + ["value"] if len(cols) > 1 else ["value"]
        asc = [True] * (len(cols) - 1) + [self.direction == "minimize"]
        return front.sort_values(order, ascending=asc if len(cols) > 1 else [asc[-1]]).reset_index(drop=True)


def load_study(path: str | Path) -> StudyView:
    """Read a study folder (or its study.db) without writing to it."""
    path = Path(path)
    if not path.exists():
        raise StudyError(f"{path} does not exist; pass the folder given to `nas search --out`")
    db = path if path.is_file() else path / DB_NAME
    with Storage(db, read_only=True) as st:
        meta, trials = st.meta(), st.trials()
    return StudyView(path=db.parent, meta=meta, trials=trials)


def _require_finished(view: StudyView) -> None:
    if not view.finished:
        raise StudyError(f"{view.path}: study has no finished trials yet; wait until `nas search` "
                         "finishes its first trial and run `nas report` again")


# --- text ---------------------------------------------------------------------------------------

def _si(x: Any) -> str:
    """12_300_000 -> '12.3M' (MACs and params read better in SI)."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "-"
    x = float(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.0f}"


def _num(x: Any, digits: int = 4) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{float(x):.{digits}f}"


def _summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """The columns a person reads first, formatted as text."""
    out = pd.DataFrame({"id": df["id"].astype(int)})
    out["value"] = df["value"].map(_num)
    for col in ("val_acc", "test_acc"):
        if col in df and df[col].notna().any():
            out[col] = pd.to_numeric(df[col], errors="coerce").map(_num)
    out["MACs"] = df["macs"].map(_si)
    out["params"] = df["params"].map(_si)
    out["score"] = df["score"].map(_num)
    if "post_mean" in df and df["post_mean"].notna().any():  # the front's GP posterior (nas.front)
        out["posterior"] = [f"{_num(m)} ± {_num(sd)}" for m, sd in zip(df["post_mean"], df["post_std"])]
    if "duration" in df and df["duration"].notna().any():
        out["time_s"] = df["duration"].map(lambda d: _num(d, 1))
    if "blocks" in df:
        out["blocks"] = df["blocks"].fillna("")
    return out.reset_index(drop=True)


def _top_frame(view: StudyView, top: int) -> pd.DataFrame:
    df = view.trials_dataframe().set_index("id", drop=False)
    ids = [t.id for t in view.ranked()[:top]]
    return df.loc[ids] if ids else df.iloc[:0]


def _text_table(table: pd.DataFrame) -> str:
    return table.to_string(index=False, justify="right")


def format_summary(view: StudyView, top: int = 10) -> str:
    """The text `nas report` prints: status counts, the best `top` trials and the Pareto front."""
    _require_finished(view)
    counts = view.counts()
    lines = [f"study {view.path}  ({len(view.trials)} trials: "
             + ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; {view.direction} score)"]
    ranked = view.ranked()
    mf = report_mf.fidelity_of(view) is not None
    if mf:
        lines += ["", report_mf.format_fidelity(view)]
    if not ranked and mf:
        lines.append("no trial reached the top rung yet; best so far at lower rungs:")
        lines.append(_text_table(report_mf.stopped_trials(view)))
    if not ranked:
        lines.append("no complete trials yet.")
        errs = [t for t in view.trials if t.error][-5:]
        if errs:
            lines.append("last errors:")
            lines += [f"  #{t.id} {t.status}: {t.error.splitlines()[0] if t.error else ''}" for t in errs]
        return "\n".join(lines)
    lines += ["", f"top {min(top, len(ranked))} trials by score:", _text_table(_summary_table(_top_frame(view, top)))]
    front = view.pareto_front()
    names = ", ".join(f"{c} {'max' if mx else 'min'}" for c, mx in view.pareto_objectives())
    lines += ["", f"Pareto front ({names}): {len(front)} trials", _text_table(_summary_table(front))]
    return "\n".join(lines)


# --- plots --------------------------------------------------------------------------------------

def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _empty_plot(title: str, message: str) -> bytes:
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return _png(fig)


def plot_score_over_trials(view: StudyView) -> bytes:
    """Each complete trial's score (value when there is no score) and the best so far."""
    ranked = sorted(view.ranked(), key=lambda t: t.id)
    if not ranked:
        return _empty_plot("score over trials", "no complete trials")
    ids = np.array([t.id for t in ranked])
    y = np.array([view.objective(t) for t in ranked], dtype=float)
    best = np.maximum.accumulate(y * view.sign) * view.sign
    label = "score" if any(t.score is not None for t in ranked) else "value"
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(ids, y, s=18, alpha=0.7, label=label)
    ax.step(ids, best, where="post", color="C3", label="best so far")
    bad = [t.id for t in view.trials if t.status in (FAILED, INFEASIBLE)]
    if bad:  # failures have no score; tick them under the axis so gaps in the ids are explained
        ax.plot(bad, np.full(len(bad), 0.03), "x", color="0.5", transform=ax.get_xaxis_transform(),
                label="failed / infeasible")
    ax.set_xlabel("trial id")
    ax.set_ylabel(label)
    ax.set_title(f"{label} per trial ({view.direction})")
    fig.legend(loc="outside lower center", ncols=3, fontsize="small")
    return _png(fig)


def plot_value_vs_cost(view: StudyView) -> bytes:
    """Value against MACs (log x), complete trials only, with the 2-D front as a step line."""
    df = view.trials_dataframe()
    df = df[df["status"] == COMPLETE].dropna(subset=["value"])
    cost = "macs" if df["macs"].notna().any() else "params" if df["params"].notna().any() else None
    if cost is None or df.empty:
        return _empty_plot("value vs MACs", "no complete trials with MACs or params")
    df = df.dropna(subset=[cost])
    x = df[cost].to_numpy(dtype=float)
    y = df["value"].to_numpy(dtype=float)
    maximize = view.direction == "maximize"
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    color = df["params"].to_numpy(dtype=float) if cost == "macs" and df["params"].notna().all() else None
    sc = ax.scatter(x, y, c=color, s=22, cmap="viridis", alpha=0.8,
                    norm="log" if color is not None and (color > 0).all() else None)
    if color is not None:
        fig.colorbar(sc, ax=ax, label="params")
    m = pareto_mask(np.c_[y, x], maximize=[maximize, False])
    order = np.argsort(x[m])
    fx, fy = x[m][order], y[m][order]
    ax.step(fx, fy, where="post", color="C3", lw=1.5, label=f"front ({m.sum()})")
    ax.scatter(fx, fy, facecolors="none", edgecolors="C3", s=60)
    if (x > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel("MACs" if cost == "macs" else cost)
    ax.set_ylabel("value")
    ax.set_title(f"value vs {cost} (complete trials)")
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def _design_matrix(df: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, list[str]]:
    """Flat config -> numbers: numeric columns as they are (absent -> NaN), others one-hot (absent -> all 0).

    Returns X (n, p) and, for each of the p columns, the config column it came from.
    """
    blocks, owners = [], []
    for col in cols:
        s = df[col]
        num = pd.to_numeric(s.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")
        if num.notna().sum() == s.notna().sum():
            blocks.append(num.to_numpy(dtype=float)[:, None])
            owners.append(col)
        else:
            dummies = pd.get_dummies(s.astype("string"), dtype=float)
            blocks.append(dummies.to_numpy())
            owners += [col] * dummies.shape[1]
    return np.hstack(blocks), owners


def parameter_importance(view: StudyView, *, seed: int = 0) -> pd.Series:
    """How much each config column explains the value, summing to 1 (largest first).

    Mean decrease in impurity of a random forest fitted to value on the flat config, summed over each
    parameter's one-hot columns (the method of Optuna's MeanDecreaseImpurityImportanceEvaluator). Conditional
    parameters that a trial lacks are NaN, which scikit-learn's forests split on directly. MDI favours
    parameters with many distinct values; it ranks, it does not prove cause. Constant columns are left out.
    """
    from sklearn.ensemble import RandomForestRegressor  # only the report needs it; keep `import nas` light

    df = view.trials_dataframe()
    df = df[df["status"] == COMPLETE].dropna(subset=["value"])
    cols = [c for c in view.config_columns
            if df[c].astype("string").nunique(dropna=False) > 1]  # astype: lists/bools hash as text
    if len(df) < 4 or not cols:  # a forest on 3 points says nothing
        return pd.Series(dtype=float)
    X, owners = _design_matrix(df, cols)
    forest = RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
    forest.fit(X, df["value"].to_numpy(dtype=float))
    imp = pd.Series(forest.feature_importances_, index=owners).groupby(level=0, sort=False).sum()
    return imp.reindex(cols).fillna(0.0).sort_values(ascending=False, kind="stable")


def plot_param_effects(view: StudyView, importance: pd.Series | None = None) -> bytes:
    """Value against each of the top parameters by importance: scatter for many levels, boxes for few."""
    if importance is None:
        importance = parameter_importance(view)
    if importance.empty:
        return _empty_plot("parameter effects", "needs at least 4 complete trials with varying parameters")
    df = view.trials_dataframe()
    df = df[df["status"] == COMPLETE].dropna(subset=["value"])
    top = list(importance.index[:TOP_EFFECTS])
    ncol = min(4, len(top))
    nrow = math.ceil(len(top) / ncol)
    height = 2.8 * nrow + 0.5
    fig = Figure(figsize=(3.2 * ncol, height))
    # fixed margins: constrained layout costs ~1 s per grid on a small CPU and these labels have known sizes
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.75 / height, bottom=0.85 / height, wspace=0.3,
                        hspace=0.9 / 2.8 * 2)
    fig.suptitle("value vs the most important parameters (random-forest MDI importance)")
    y = df["value"].to_numpy(dtype=float)
    for i, col in enumerate(top):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        s = df[col]
        num = pd.to_numeric(s.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")
        numeric = num.notna().sum() == s.notna().sum() and num.notna().any()
        if numeric and num.nunique() > 6:
            ax.scatter(num, y, s=12, alpha=0.7)
            pos = num.dropna()
            if (pos > 0).all() and pos.max() / pos.min() > 20:  # lr, weight decay: log-uniform spaces
                ax.set_xscale("log")
        else:
            levels = s.map(_level)
            names = sorted(levels.unique(), key=lambda v: (v == "absent", _sort_key(v)))
            data = [y[(levels == n).to_numpy()] for n in names]
            ax.boxplot(data, tick_labels=names, showfliers=False)
            rng = np.random.default_rng(0)
            for j, d in enumerate(data):
                ax.scatter(np.full(len(d), j + 1.0) + rng.uniform(-0.15, 0.15, len(d)), d, s=8, alpha=0.6)
            ax.tick_params(axis="x", labelrotation=30, labelsize="small")
        ax.set_title(f"{col}\nimportance {importance[col]:.2f}", fontsize="small")
        if i % ncol == 0:
            ax.set_ylabel("value")
    return _png(fig)


def _level(v: Any) -> str:
    """A category label: 2.0 -> "2" (NaN-padded int columns turn float), missing -> "absent"."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "absent"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _sort_key(v: str):
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


# --- HTML ---------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}
pre{background:#f7f7f7;padding:0.6em;overflow-x:auto;font-size:12px}img{max-width:100%}
h2{border-bottom:1px solid #ddd;padding-bottom:2px}"""


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, na_rep="", escape=True)


def _meta_html(meta: dict) -> str:
    rows = []
    for k, v in meta.items():
        text = v if isinstance(v, str) else json.dumps(v)
        if len(text) > 120 or "\n" in text:  # spaces and the like fold away; the summary is the first line
            full = v if isinstance(v, str) else json.dumps(v, indent=1)
            cell = f"<details><summary>{html.escape(text[:100])}…</summary><pre>{html.escape(full)}</pre></details>"
        else:
            cell = html.escape(text)
        rows.append(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{cell}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _report_html(view: StudyView, pngs: dict[str, bytes], importance: pd.Series,
                 section: dict | None) -> str:
    best = view.best
    counts = ", ".join(f"{k}: {v}" for k, v in view.counts().items())
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lightnas study {html.escape(str(view.path))}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>Study {html.escape(str(view.path))}</h1>",
             f"<p>{len(view.trials)} trials ({html.escape(counts)}); generated "
             f"{html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
             "<h2>Study</h2>", _meta_html(view.meta)]
    if report_mf.fidelity_of(view) is not None:
        parts.append(report_mf.fidelity_html(view, _html_table))
    if best is not None:
        parts += [f"<h2>Best trial: #{best.id}</h2>",
                  _html_table(_summary_table(_top_frame(view, 1))),
                  f"<pre>{html.escape(json.dumps(best.config, indent=2))}</pre>"]
        parts += ["<h2>Top trials</h2>", _html_table(_summary_table(_top_frame(view, 10)))]
        names = ", ".join(f"{c} {'max' if mx else 'min'}" for c, mx in view.pareto_objectives())
        parts += [f"<h2>Pareto front ({html.escape(names)})</h2>", _html_table(_summary_table(view.pareto_front()))]
    else:
        parts.append("<p>No complete trials yet.</p>")
    parts += ["<h2>Plots</h2>"] + [f"<h3>{html.escape(n)}</h3>{_img(b, n)}" for n, b in pngs.items()]
    if not importance.empty:
        imp = pd.DataFrame({"parameter": importance.index, "importance": importance.map(lambda v: f"{v:.3f}")})
        parts += ["<p>Importance: mean decrease in impurity of a 100-tree random forest fitted to the value of "
                  "complete trials on the flattened config (one-hot categoricals, summed per parameter). "
                  "It ranks parameters; it does not prove cause.</p>", _html_table(imp.head(20))]
    failed = [t for t in view.trials if t.status in (FAILED, INFEASIBLE) and t.error]
    if failed:
        rows = pd.DataFrame({"id": [t.id for t in failed], "status": [t.status for t in failed],
                             "error": [t.error.splitlines()[0][:200] for t in failed]})
        parts += ["<h2>Failed and infeasible trials</h2>", _html_table(rows)]
    if section:
        parts += [f"<h2>{html.escape(str(section.get('title', 'Best model')))}</h2>", str(section.get("html", ""))]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, *, model_section: ModelSection | None = None,
                 out: str | Path | None = None) -> dict[str, Path]:
    """Write trials.csv, pareto.csv, three PNGs and report.html (plus model.txt with a model section)
    into `out` (default: the study folder). Returns {file name: path}.

    `model_section(best_trial) -> {"title", "html", "text"}` adds a section about the best model; if it
    raises, the report says so instead of failing.
    """
    from nas.front import plot_front

    view = load_study(path)
    _require_finished(view)
    out = Path(out) if out is not None else view.path
    importance = parameter_importance(view)
    pngs = {"score_over_trials.png": plot_score_over_trials(view),
            "acc_vs_macs.png": plot_value_vs_cost(view),
            "pareto_front.png": plot_front(view),
            "param_effects.png": plot_param_effects(view, importance)}
    if report_mf.fidelity_of(view) is not None:
        pngs["learning_curves.png"] = report_mf.plot_curves(view, _png)
        pngs["epochs_per_rung.png"] = report_mf.plot_epochs_per_rung(view, _png)
    section = None
    if model_section is not None and view.best is not None:
        try:
            section = model_section(view.best)
        except Exception as e:  # the model section is extra; a report without it beats no report
            warnings.warn(f"model section failed: {e}", stacklevel=2)
            msg = f"model section failed: {type(e).__name__}: {e}"
            section = {"title": "Best model", "html": f"<p>{html.escape(msg)}</p>", "text": msg}
    files = {"trials.csv": view.trials_dataframe().to_csv(index=False),
             "pareto.csv": view.pareto_front().to_csv(index=False),
             **pngs,
             "report.html": _report_html(view, pngs, importance, section)}
    if section and section.get("text"):
        files["model.txt"] = str(section["text"])
    written = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            target = out / name
            written[name] = (atomic_write_bytes(target, data) if isinstance(data, bytes)
                             else atomic_write_text(target, data))
    except OSError as e:
        raise StudyError(f"cannot write the report into {out} ({e.strerror or e}); "
                         "make it writable, or run `nas report --no-files` to print the tables only") from None
    return written
