"""Reports of a study: trial tables, the Pareto front, plots and one self-contained HTML page.

Reads `study.db` read-only (works while `nas search` is still writing) and writes only report files.
Imports no torch and nothing from search_spaces: the model section and the per-config summaries (the CNN
"blocks" column, ``search_spaces.summary.SUMMARIES``) are callables the CLI passes in. report.html is
rendered from ``nas/templates/report.html`` by Jinja2 with autoescape; plots live in ``nas.report_plots``.

>>> view = load_study("results/x")                # doctest: +SKIP
>>> print(format_summary(view))                   # doctest: +SKIP
>>> write_report("results/x")                     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from nas import fmt, report_mf
from nas.errors import StudyError
from nas.fsutil import atomic_write_bytes, atomic_write_text
from nas.pareto import pareto_mask
from nas.report_plots import (
    LABELS,
    TOP_EFFECTS,  # noqa: F401  (re-exported)
    parameter_importance,
    plot_param_effects,
    plot_score_over_trials,
    plot_value_vs_cost,
    png,
)
from nas.storage import DB_NAME, open_study  # noqa: F401  (DB_NAME: re-exported)
from nas.trial import COMPLETE, FAILED, INFEASIBLE, PAUSED, STATUSES, Trial

_FIXED = ("id", "status", "value", "score")  # then the known objectives (macs, params, ...) by name
_MF_FIXED = ("rung", "resource")  # multi-fidelity studies only: the last rung index and the epochs trained
_TAIL = ("duration", "error", "seed", "attempts")
_FINISHED = (COMPLETE, FAILED, INFEASIBLE, PAUSED)  # paused: a rung value is recorded (multi-fidelity)
_READABLE_META = {"created_at": fmt.when, "elapsed": fmt.duration}  # meta shown to a person, not as raw seconds

ModelSection = Callable[[Trial], dict]
Summaries = Mapping[str, Callable[[dict], str]]  # column name -> one-line summary of a config


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
        return tuple((int(p), 0) if p.isdigit() else (0, rank[(tuple(parts[:i]), p)]) for i, p in enumerate(parts))

    return sorted(keys, key=key)


# --- the view -----------------------------------------------------------------------------------


@dataclass
class StudyView:
    """A snapshot of a study, read once. Tables are pandas DataFrames; `best` is a Trial."""

    path: Path
    meta: dict
    trials: list[Trial]
    summaries: Summaries = field(default_factory=dict)  # extra columns from the config (CNN: "blocks")
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
    def known_columns(self) -> list[str]:
        """The known objectives any trial has (a CNN study: macs, params), in first-appearance order."""
        return list(dict.fromkeys(k for t in self.trials for k in t.known))

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
        """One row per trial: id, status, value, score, the known objectives (macs, params), flat metrics, the
        summaries (blocks), duration, error, seed, attempts, then the flat config ("optimizer.name", ...).

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
        known = self.known_columns
        # a summary column appears when it says something of at least one trial
        said = {name: [fn(t.config) for t in self.trials] for name, fn in self.summaries.items()}
        said = {name: texts for name, texts in said.items() if any(texts)}
        for t in self.trials:
            m = _flatten(t.metrics or {}, "", {}, keep_lists=False)
            c = _flatten(t.config, "", {}, keep_lists=True)
            metric_cols.update(dict.fromkeys(k for k in m if k not in _FIXED))
            config_cols.update(dict.fromkeys(c))
            rows.append((t, m, c))
        mf = any(t.resource is not None for t in self.trials)
        head = _FIXED + tuple(known) + (_MF_FIXED if mf else ())
        metric_cols = {k: None for k in metric_cols if k not in head}
        fixed = list(head) + list(metric_cols) + list(said) + list(_TAIL)
        rename = {k: (f"config.{k}" if k in fixed else k) for k in _nested_order(list(config_cols))}
        columns = fixed + list(rename.values())
        records = []
        for i, (t, m, c) in enumerate(rows):
            r = {k: t.known.get(k) if k in known else getattr(t, k) for k in head}
            r.update({k: v for k, v in m.items() if k not in head})
            r.update({name: texts[i] for name, texts in said.items()})
            r.update(duration=t.duration, error=t.error, seed=t.seed, attempts=t.attempts)
            r.update({rename[k]: v for k, v in c.items()})
            records.append(r)
        df = pd.DataFrame.from_records(records, columns=columns)
        for col in ("value", "score", "duration"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        for col in known:  # nullable integers where every known value is whole: failed trials may have none
            values = pd.to_numeric(df[col], errors="coerce")
            whole = bool((values.dropna() % 1 == 0).all())
            df[col] = values.astype("Int64") if whole else values.astype(float)
        return df, list(rename.values())

    def pareto_objectives(self) -> list[tuple[str, bool]]:
        """(column, maximize) pairs of the front: value, plus each known objective (minimised) the study has."""
        objs = [("value", self.direction == "maximize")]
        for col in self.known_columns:
            if any(t.known.get(col) is not None for t in self.trials if t.status == COMPLETE):
                objs.append((col, False))
        return objs

    def pareto_front(self, *, posterior: bool = True) -> pd.DataFrame:
        """Complete trials not dominated on (value max, each known objective min: macs, params), cheapest first.

        Uses a known objective only where the study has it; a complete trial missing a used one is left out.
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


def load_study(path: str | Path, *, summaries: Summaries | None = None) -> StudyView:
    """Read a study folder (or its study.db) without writing to it. ``summaries`` adds columns computed from
    each config (the CLI passes the CNN block summary: ``{"blocks": block_summary}``)."""
    with open_study(path) as st:
        meta, trials = st.meta(), st.trials()
    return StudyView(path=st.path.parent, meta=meta, trials=trials, summaries=dict(summaries or {}))


def _require_finished(view: StudyView) -> None:
    if not view.finished:
        raise StudyError(
            f"{view.path}: study has no finished trials yet; wait until `nas search` "
            "finishes its first trial and run `nas report` again"
        )


# --- text ---------------------------------------------------------------------------------------


def _num(x: Any, digits: int = 4) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{float(x):.{digits}f}"


def _summary_table(view: StudyView, df: pd.DataFrame) -> pd.DataFrame:
    """The columns a person reads first, formatted as text (counts in SI, durations as "1m 16.6s")."""
    out = pd.DataFrame({"id": df["id"].astype(int)})
    out["value"] = df["value"].map(_num)
    for col in ("val_acc", "test_acc"):
        if col in df and df[col].notna().any():
            out[col] = pd.to_numeric(df[col], errors="coerce").map(_num)
    for col in view.known_columns:
        out[LABELS.get(col, col)] = df[col].map(fmt.si)
    out["score"] = df["score"].map(_num)
    if "post_mean" in df and df["post_mean"].notna().any():  # the front's GP posterior (nas.front)
        out["posterior"] = [f"{_num(m)} ± {_num(sd)}" for m, sd in zip(df["post_mean"], df["post_std"])]
    if "duration" in df and df["duration"].notna().any():
        out["time"] = df["duration"].map(fmt.duration)
    for name in view.summaries:
        if name in df:
            out[name] = df[name].fillna("")
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
    lines = [
        f"study {view.path}  ({len(view.trials)} trials: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"; {view.direction} score)"
    ]
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
    lines += [
        "",
        f"top {min(top, len(ranked))} trials by score:",
        _text_table(_summary_table(view, _top_frame(view, top))),
    ]
    front = view.pareto_front()
    names = ", ".join(f"{c} {'max' if mx else 'min'}" for c, mx in view.pareto_objectives())
    lines += ["", f"Pareto front ({names}): {len(front)} trials", _text_table(_summary_table(view, front))]
    return "\n".join(lines)


# --- HTML ---------------------------------------------------------------------------------------


def _html_table(df: pd.DataFrame):
    from markupsafe import Markup

    return Markup(df.to_html(index=False, border=0, na_rep="", escape=True))  # pandas escapes the cells


def _meta_rows(meta: dict) -> list[tuple[str, str, str | None]]:
    """(key, shown text, full text or None): long values (spaces) fold away behind their first 100 characters."""
    rows = []
    for k, v in meta.items():
        readable = _READABLE_META.get(k)
        if readable is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
            rows.append((k, readable(v), None))
            continue
        text = v if isinstance(v, str) else json.dumps(v)
        if len(text) > 120 or "\n" in text:
            rows.append((k, text[:100], v if isinstance(v, str) else json.dumps(v, indent=1)))
        else:
            rows.append((k, text, None))
    return rows


def _report_html(view: StudyView, pngs: dict[str, bytes], importance: pd.Series, section: dict | None) -> str:
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("nas", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    best = view.best
    failed = [t for t in view.trials if t.status in (FAILED, INFEASIBLE) and t.error]
    page = {
        "path": str(view.path),
        "n_trials": len(view.trials),
        "counts": ", ".join(f"{k}: {v}" for k, v in view.counts().items()),
        "generated": fmt.when(time.time()),
        "meta": _meta_rows(view.meta),
        "fidelity": None,
        "best": best,
        "best_table": None,
        "best_config": None,
        "top_table": None,
        "front_table": None,
        "front_names": ", ".join(f"{c} {'max' if mx else 'min'}" for c, mx in view.pareto_objectives()),
        "plots": [(n, base64.b64encode(b).decode()) for n, b in pngs.items()],
        "importance": None,
        "failed": None,
        "section": None,
    }
    if report_mf.fidelity_of(view) is not None:
        facts = report_mf.fidelity_facts(view)
        page["fidelity"] = {**facts, "rungs": _html_table(facts["rungs"])}
    if best is not None:
        page.update(
            best_table=_html_table(_summary_table(view, _top_frame(view, 1))),
            best_config=json.dumps(best.config, indent=2),
            top_table=_html_table(_summary_table(view, _top_frame(view, 10))),
            front_table=_html_table(_summary_table(view, view.pareto_front())),
        )
    if not importance.empty:
        imp = pd.DataFrame({"parameter": importance.index, "importance": importance.map(lambda v: f"{v:.3f}")})
        page["importance"] = _html_table(imp.head(20))
    if failed:
        page["failed"] = _html_table(
            pd.DataFrame(
                {
                    "id": [t.id for t in failed],
                    "status": [t.status for t in failed],
                    "error": [t.error.splitlines()[0][:200] for t in failed],
                }
            )
        )
    if section:  # its html is a fragment the model section built (and escaped) itself
        page["section"] = {"title": str(section.get("title", "Best model")), "html": Markup(section.get("html", ""))}
    return env.get_template("report.html").render(page)


def write_report(
    path: str | Path,
    *,
    model_section: ModelSection | None = None,
    out: str | Path | None = None,
    summaries: Summaries | None = None,
) -> dict[str, Path]:
    """Write trials.csv, pareto.csv, three PNGs and report.html (plus model.txt with a model section)
    into `out` (default: the study folder). Returns {file name: path}.

    `model_section(best_trial) -> {"title", "html", "text"}` adds a section about the best model; if it
    raises, the report says so instead of failing.
    """
    from nas.front import plot_front

    view = load_study(path, summaries=summaries)
    _require_finished(view)
    out = Path(out) if out is not None else view.path
    importance = parameter_importance(view)
    pngs = {
        "score_over_trials.png": plot_score_over_trials(view),
        "acc_vs_macs.png": plot_value_vs_cost(view),
        "pareto_front.png": plot_front(view),
        "param_effects.png": plot_param_effects(view, importance),
    }
    if report_mf.fidelity_of(view) is not None:
        pngs["learning_curves.png"] = report_mf.plot_curves(view, png)
        pngs["epochs_per_rung.png"] = report_mf.plot_epochs_per_rung(view, png)
    section = None
    if model_section is not None and view.best is not None:
        try:
            section = model_section(view.best)
        except Exception as e:  # the model section is extra; a report without it beats no report
            warnings.warn(f"model section failed: {e}", stacklevel=2)
            msg = f"model section failed: {type(e).__name__}: {e}"
            section = {"title": "Best model", "html": f"<p>{html.escape(msg)}</p>", "text": msg}
    files = {
        "trials.csv": view.trials_dataframe().to_csv(index=False),
        "pareto.csv": view.pareto_front().to_csv(index=False),
        **pngs,
        "report.html": _report_html(view, pngs, importance, section),
    }
    if section and section.get("text"):
        files["model.txt"] = str(section["text"])
    written = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            target = out / name
            written[name] = (
                atomic_write_bytes(target, data) if isinstance(data, bytes) else atomic_write_text(target, data)
            )
    except OSError as e:
        raise StudyError(
            f"cannot write the report into {out} ({e.strerror or e}); "
            "make it writable, or run `nas report --no-files` to print the tables only"
        ) from None
    return written
