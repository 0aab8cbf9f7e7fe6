"""``nas``: search, report, export, inspect, space. Wires the engine to search_spaces and trainers.

Every user error ends in one line on stderr and exit code 2; Ctrl-C in 130.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

from nas.errors import NasError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage over two lines otherwise)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _int_in(low: int, high: int | None = None):
    """An argparse type: a whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(
                f"must be at least {low}, got {v}" if high is None else f"must be from {low} to {high}, got {v}"
            )
        return v

    return parse


_positive_int = _int_in(1)
# numpy refuses negative seeds, and each trial stores seed * 100003 + id as a 64-bit SQLite integer.
_seed = _int_in(0, 2**32 - 1)


def _suffixed(text: str, mult: dict, example: str) -> float:
    """A positive finite number with an optional unit suffix from ``mult``."""
    t = text.strip().lower()
    try:
        v = float(t[:-1]) * mult[t[-1]] if t and t[-1] in mult else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as {example}, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return v


def _fraction_or_count(text: str) -> float:
    """GPUs per trial: 0, a fraction (0.5: two trials share a GPU) or a whole count."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.5 or 1, got {text!r}") from None
    if not math.isfinite(v) or v < 0 or (v > 1 and v != int(v)):
        raise argparse.ArgumentTypeError(f"must be 0, a fraction below 1 or a whole number, got {text!r}")
    return v


def _fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.15, got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text!r}")
    return v


def _amount(text: str) -> float:
    """A count such as ``2e5`` or ``200k`` (suffixes k, M, G)."""
    return _suffixed(text, {"k": 1e3, "m": 1e6, "g": 1e9}, "2e5 or 200k")


def _seconds(text: str) -> float:
    """A duration such as ``300``, ``5m`` or ``1h``."""
    return _suffixed(text, {"s": 1, "m": 60, "h": 3600}, "300, 5m or 1h")


def _shape(text: str) -> tuple:
    try:
        dims = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,224,224, got {text!r}") from None
    if len(dims) != 3 or min(dims) < 1 or max(dims) > 16384:
        raise argparse.ArgumentTypeError(f"expected three positive sizes C,H,W, got {text!r}")
    return dims


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nas", description="lightnas: find small, accurate CNNs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("search", help="search architecture and training hyper-parameters on a data set")
    s.add_argument(
        "--dataset",
        help="digits (bundled, the default), mnist, fashion-mnist, cifar10, cifar100, or imagefolder "
        "(the default when --data-dir is an image folder)",
    )
    s.add_argument("--data-dir", help="where the data set lives (an ImageFolder root for imagefolder)")
    s.add_argument(
        "--image-size",
        type=_int_in(8, 1024),
        help="resize images to this side (image folders: default 32; torchvision sets: native)",
    )
    s.add_argument("--val-fraction", type=_fraction, default=0.15, help="validation share (default 0.15)")
    s.add_argument(
        "--test-fraction",
        type=_fraction,
        default=0.2,
        help="test share where the data set has no test split (default 0.2)",
    )
    s.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    s.add_argument("--epochs", type=_positive_int, help="train every trial for exactly this many epochs")
    s.add_argument("--download", action="store_true", help="download torchvision data sets if missing")
    s.add_argument("--out", help="study folder (default results/DATASET)")
    s.add_argument("--trials", type=_positive_int, help="number of trials (default: the data set's preset)")
    s.add_argument("--time-budget", type=_seconds, help="stop starting trials after this long (300, 5m, 1h)")
    s.add_argument("--max-macs", type=_amount, help="hard limit: configs above are never trained")
    s.add_argument("--max-params", type=_amount, help="hard limit on parameters")
    s.add_argument(
        "--score", help="acc | mnas[:macs=T,params=P,alpha=A,beta=B] | weighted:macs=W,params=W (default mnas)"
    )
    s.add_argument(
        "--objective",
        choices=["score", "pareto"],
        help="score: one network by --score (default); pareto: the whole accuracy-MACs-params front",
    )
    s.add_argument(
        "--seed", type=_seed, help="seeds the optimiser, the data splits and every trial's training (default 0)"
    )
    s.add_argument("--resume", action="store_true", help="continue the study in --out (or start it)")
    s.add_argument("--space", help="a search space YAML/JSON file (default: the built-in space for the data set)")
    s.add_argument("--workers", type=_positive_int, default=1, help="trials in parallel")
    s.add_argument(
        "--executor",
        choices=["inprocess", "process", "ray"],
        help="where trials run (default: inprocess for 1 worker, process for more)",
    )
    s.add_argument("--ray-address", help="address of an existing Ray cluster (e.g. ray://head:10001 or auto)")
    s.add_argument("--gpus-per-trial", type=_fraction_or_count, default=0.0, help="GPUs each trial asks Ray for")
    s.add_argument(
        "--force", action="store_true", help="allow more --workers than usable cores or than the available memory holds"
    )
    s.add_argument("--warmup", type=_positive_int, help="random space-filling trials before the GP (default 8)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument(
        "--fidelity",
        choices=["on", "off"],
        help="on: stop poor trials at rungs and continue promising ones (asynchronous successive "
        "halving); off: train every trial for --max-epochs (default on; --resume keeps the study's)",
    )
    s.add_argument("--min-epochs", type=_positive_int, help="first rung (default: the data set's preset)")
    s.add_argument("--max-epochs", type=_positive_int, help="last rung: a full training (default: the preset)")
    s.add_argument("--eta", type=_positive_int, help="rungs grow by this factor; the top 1/eta go on (default 3)")
    s.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default=None,
        help="training arithmetic: auto = bfloat16 autocast on CPUs with bfloat16 hardware, else fp32",
    )
    s.add_argument(
        "--no-channels-last",
        action="store_true",
        help="train in NCHW memory format (default on CPU: channels-last, which runs faster there)",
    )

    r = sub.add_parser("report", help="tables, Pareto front, plots and report.html of a study")
    r.add_argument("study")
    r.add_argument("--top", type=_positive_int, default=10)
    r.add_argument("--no-files", action="store_true", help="print only; write no files")
    r.add_argument("--no-profile", action="store_true", help="skip the latency / FLOPs table of the best model")

    e = sub.add_parser("export", help="the best (or a chosen) network as a standalone PyTorch module")
    e.add_argument("study")
    e.add_argument("--trial", type=int, help="trial id (default: the best by score)")
    e.add_argument("--out", required=True, help="folder to write model.py, weights.pt, config.json, model.ts")
    e.add_argument("--no-retrain", action="store_true", help="use the trial's own weights instead of retraining")
    e.add_argument("--max-macs", type=_amount, help="export the most accurate front member within this many MACs")
    e.add_argument("--max-params", type=_amount, help="... and within this many parameters")

    i = sub.add_parser("inspect", help="params, MACs and the per-module table of an architecture config")
    i.add_argument("config", help="a JSON or YAML config file, or a shipped reference by name (mobilenet_v2, resnet50)")
    i.add_argument("--input-shape", type=_shape, default=(3, 224, 224))
    i.add_argument("--num-classes", type=_positive_int)
    i.add_argument("--json", action="store_true")

    sp = sub.add_parser("space", help="summarise a search space (default: the built-in one)")
    sp.add_argument("file", nargs="?")
    sp.add_argument("--dataset", default="digits", help="preset whose default space to show")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores the warning printer when main returns (tests call it)
            warnings.showwarning = _one_line_warning(args.command)
            return {
                "search": cmd_search,
                "report": cmd_report,
                "export": cmd_export,
                "inspect": cmd_inspect,
                "space": cmd_space,
            }[args.command](args) or 0
    except NasError as e:
        print(f"nas {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\nnas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _one_line_warning(command: str):
    """Warnings as ``nas COMMAND: warning: ...`` on one line: Python's default format adds the file, line
    and source line of the warn() call, which means nothing to a user."""

    def show(message, category, filename, lineno, file=None, line=None):
        stream = file or sys.stderr
        try:
            stream.write(f"nas {command}: warning: {' '.join(str(message).split())}\n")
        except (OSError, ValueError):  # a closed stream: a warning is not worth a traceback
            pass

    return show


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or e.__class__.__name__


# ---------------------------------------------------------------------------------------- search
def cmd_search(args) -> int:
    from nas import cli_wiring as wiring
    from nas.options import as_flags

    with as_flags(wiring.FLAGS):  # nas.api's and the study's checks name our flags
        study, total = wiring.make_study(args)
        if not args.quiet:
            print(f"nas search: {study.folder} ({wiring.describe(study)})", file=sys.stderr)
        try:
            study.run()
        finally:
            study.executor.shutdown()  # worker processes, or the Ray instance this search started
            close = getattr(study.on_progress, "close", None)
            if close is not None:
                close()
    from nas.report import format_summary, load_study
    from search_spaces.summary import SUMMARIES

    print(format_summary(load_study(study.folder, summaries=SUMMARIES), top=5))
    if study.stop_reason:
        print(f"nas search: ended before the budget: {study.stop_reason}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------- report
def cmd_report(args) -> int:
    from nas.report import format_summary, load_study, write_report
    from search_spaces.summary import SUMMARIES

    view = load_study(args.study, summaries=SUMMARIES)
    print(format_summary(view, top=args.top))
    if not args.no_files:
        section = None
        if not args.no_profile:
            from nas.api import model_section

            section = model_section(view)
        files = write_report(args.study, model_section=section, summaries=SUMMARIES)
        print("\nwrote: " + ", ".join(str(Path(f).name) for f in files.values()))
    return 0


# ---------------------------------------------------------------------------------------- export
def cmd_export(args) -> int:
    from nas.export import export_study

    trial_id = args.trial
    if args.max_macs is not None or args.max_params is not None:
        if trial_id is not None:
            raise NasError("give --trial or a budget (--max-macs / --max-params), not both")
        from nas.front import pick_within
        from nas.report import load_study

        trial_id = pick_within(load_study(args.study), max_macs=args.max_macs, max_params=args.max_params)
        print(f"front member within the budget: trial {trial_id}", file=sys.stderr)
    written = export_study(args.study, out=args.out, trial_id=trial_id, retrain=not args.no_retrain)
    for name in written:
        print(name)
    return 0


# ---------------------------------------------------------------------------------------- inspect
def cmd_inspect(args) -> int:
    from search_spaces.inspect import inspect_main

    print(inspect_main(args.config, args.input_shape, args.json, num_classes=args.num_classes))
    return 0


# ---------------------------------------------------------------------------------------- space
def cmd_space(args) -> int:
    from nas.space import Space

    if args.file:
        space = Space.load(args.file)
    else:
        from nas.api import default_space_for

        space = default_space_for(args.dataset)
    print(space.summary())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
