"""The ``discovery`` command: ``run`` a CSV, ``demo`` on a bundled dataset, ``expand`` a model file,
``batch`` many analyses from a table of jobs.

Every expected failure ends with exit code 2 (1 for an unexpected one) and a single line on
stderr in the command's own syntax (``--min-rows``, not ``min_rows=``); ``--debug`` shows the
traceback instead. Cheap checks (the table, the output folder, the device) run before any
training, and before torch is even imported where they can; the formula is printed before the
result folder is written, so a failed write never hides it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import signal
import sys
import threading
import warnings
from pathlib import Path

__all__ = ["main"]

_DEMO = "paper_quadratic"
_RANGE_MARGIN = 0.05  # fraction of each input's training range accepted beyond its ends by ``expand``

# API keyword -> command-line flag, for messages raised by the library
_FLAGS = {"min_rows": "--min-rows", "target": "--target", "features": "--features", "order": "--order",
          "space": "--space", "seed": "--seed", "members": "--members", "test_fraction": "--test-fraction",
          "crosscheck_budget": "--crosscheck-budget", "reference_points": "--reference-points",
          "device": "--device", "crosscheck_guide": "--guide", "crosscheck": "--crosscheck",
          "trust_pickle": "--trust-pickle", "at": "--at", "radius": "--radius", "output": "--output",
          "names": "--names", "out": "--out", "index": "--index", "n_workers": "--workers",
          "client": "--scheduler", "threads_per_job": "--threads-per-job", "decompose": "--decompose",
          "time_budget": "--time-budget"}


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _CommandError(Exception):
    """An error already phrased for the command line."""


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="discovery",
        description="Find the formula behind tabular data (exact Taylor expansion of trained networks).",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="{run,demo,expand,batch}", parser_class=_Parser)

    run = sub.add_parser("run", help="discover the formula behind a CSV file")
    run.add_argument("data", help="CSV file (header line; the target is the last column unless --target)")
    run.add_argument("--target", default=None, help="column to explain (default: last column)")
    run.add_argument("--features", default=None, help="comma-separated feature columns (default: all others)")
    _common(run, default_out="results")

    demo = sub.add_parser("demo", help="run on a bundled dataset (y = (x1^2 + x2)/2)")
    demo.add_argument("--dataset", default=_DEMO, help=f"bundled dataset name (default: {_DEMO})")
    _common(demo, default_out=None, default_crosscheck="off")

    exp = sub.add_parser("expand", help="expand a saved model at a point and validate the polynomial")
    exp.add_argument("model", help="model file: model.pt of a result folder, or a TorchScript archive "
                                   "(a whole pickled module needs --trust-pickle)")
    exp.add_argument("--at", required=True, help="expansion point in the model's input space, e.g. 0.1,0.2 "
                                                 "(log values for a log-space model; --at=-1,2 when it starts "
                                                 "with a minus sign)")
    exp.add_argument("--order", type=_int_at_least(1), default=4, help="degree of the polynomial (default 4)")
    exp.add_argument("--radius", type=_positive_float, default=1.0,
                     help="half-width of the interval checked (default 1)")
    exp.add_argument("--output", type=_int_at_least(0), default=0, help="model output to expand (default 0)")
    exp.add_argument("--names", default=None, help="comma-separated input names (default: from the model file)")
    exp.add_argument("--out", default=None, help="folder for the expansion, table, plot and report")
    exp.add_argument("--trust-pickle", action="store_true",
                     help="read a whole pickled module; this RUNS CODE FROM THE FILE, use only for files you trust")
    exp.add_argument("--quiet", action="store_true", help="print nothing but errors")
    batch = sub.add_parser("batch", help="run many analyses from a CSV of jobs, on Dask or as one array task")
    batch.add_argument("jobs", help="CSV of jobs: columns data (table path), target, out (result folder, one per "
                                    "job) and one column per discover argument (order, seed, members, ...)")
    batch.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="address of a running Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
    batch.add_argument("--workers", type=_int_at_least(1), default=None, metavar="N",
                       help="processes of the local cluster (default: one per core, at most one per job)")
    batch.add_argument("--index", type=_int_at_least(0), default=None, metavar="N",
                       help="run only the job on data row N (0-based) here, without a scheduler: one task of a "
                            "SLURM/PBS array, --index $SLURM_ARRAY_TASK_ID")
    batch.add_argument("--threads-per-job", type=_int_at_least(1), default=None, metavar="N",
                       help="threads each job gives torch and Operon (default 1 on a cluster; with --index, "
                            "every core available)")
    batch.add_argument("--no-report", action="store_true", help="skip the HTML reports and figures")
    batch.add_argument("--quiet", action="store_true", help="no progress lines; only the table and errors")
    for p in (run, demo, exp, batch):
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    return parser


def _common(p: argparse.ArgumentParser, default_out, default_crosscheck: str = "auto") -> None:
    p.add_argument("--order", default="2", type=_order, help="Taylor order 1-8 or 'auto' (default 2)")
    p.add_argument("--space", default="auto", choices=["auto", "raw", "log"], help="variable space (default auto)")
    p.add_argument("--crosscheck", default=default_crosscheck, choices=["auto", "off", "operon", "pysr", "gplearn"],
                   help=f"symbolic-regression cross-check (default {default_crosscheck})")
    p.add_argument("--crosscheck-budget", type=_positive_float, default=30.0,
                   help="seconds the cross-check may search at most (default 30)")
    p.add_argument("--guide", default="structure", choices=["structure", "off"],
                   help="narrow the cross-check's search with the structure the networks' derivatives show "
                        "(inputs with influence, additive blocks); default structure")
    p.add_argument("--decompose", default="auto", choices=["auto", "on", "off"],
                   help="split the law along the structure the networks' derivatives show and solve the pieces: "
                        "'auto' when the expansion's formula only approximates (default), 'on' always, 'off' never")
    p.add_argument("--time-budget", type=_budget, default=120.0,
                   help="seconds for the whole run, shared by training, decomposition and cross-check; what is "
                        "cut is said in the notes; 'none' for no limit (default 120)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--members", type=_int_at_least(1), default=5, help="networks in the ensemble (default 5)")
    p.add_argument("--min-rows", type=_int_at_least(2), default=10,
                   help="fewest usable rows accepted (default 10)")
    p.add_argument("--test-fraction", type=_test_fraction, default=0.2,
                   help="fraction of rows held out to score the formula, in [0, 0.9) (default 0.2)")
    p.add_argument("--reference-points", type=_reference_points, default="auto",
                   help="number of expansion points, or 'auto' (up to 32 k-means centres; default)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (default auto)")
    p.add_argument("--out", default=default_out,
                   help="result folder: new, empty, or an earlier result folder (only its own files are "
                        "replaced)" + (f"; default {default_out}/<data name>" if default_out else "; default results/demo"))
    p.add_argument("--no-report", action="store_true", help="skip the HTML report and figures")
    p.add_argument("--quiet", action="store_true", help="print only the formula")
    p.add_argument("--verbose", action="store_true",
                   help="log each stage with its time on stderr, also on a terminal (default: only when stderr "
                        "is not a terminal)")


def _order(value: str):
    if value == "auto":
        return value
    if not value.isdigit() or not 1 <= int(value) <= 8:
        raise argparse.ArgumentTypeError(f"{value!r} is not an order; pass an integer from 1 to 8 or 'auto'")
    return int(value)


def _int_at_least(low: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if number < low:
            raise argparse.ArgumentTypeError(f"{value!r}; pass an integer >= {low}")
        return number
    parse.__name__ = "integer"
    return parse


def _float_where(value: str, accept, advice: str) -> float:
    """``value`` as a float that ``accept`` takes (a word is NaN, which no check accepts)."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not accept(number):
        raise argparse.ArgumentTypeError(f"{value!r}; pass {advice}")
    return number


def _positive_float(value: str) -> float:
    return _float_where(value, lambda x: 0 < x < float("inf"), "a positive number")


def _test_fraction(value: str) -> float:
    return _float_where(value, lambda x: 0 <= x < 0.9, "a number in [0, 0.9)")


def _budget(value: str):
    return None if value.lower() == "none" else _positive_float(value)


def _reference_points(value: str):
    return "auto" if value == "auto" else _int_at_least(1)(value)


# ------------------------------------------------------------------------------------- run / demo
def _precheck(args, data, target=None, features=None):
    """Table, output folder and device, before any training (torch is imported only for the
    device); returns the output folder and the table, which ``discover`` then uses as read."""
    _readable(Path(data))
    from discovery.data import load_table
    from discovery.errors import DataError
    from discovery.folders import check_output_folder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # discover() shows the table's warnings, once
        try:
            table = load_table(data, target, features, min_rows=args.min_rows)
        except DataError as exc:
            raise _CommandError(f"{data}: {_cli_syntax(str(exc))}") from exc
    out = Path(args.out) if args.out else Path("results") / "demo"
    if args.command == "run" and args.out == "results":
        out = out / Path(str(data)).stem
    check_output_folder(out, source=data, call="--out")
    from discovery.fit import _resolve_device

    _resolve_device(args.device, "--device", "pass --device cpu, or --device auto to use a GPU only when present")
    return out, table


def _readable(path: Path) -> None:
    """The checks that need no library at all: a missing, unreadable or empty file is refused at once."""
    if not path.exists():
        raise _CommandError(f"{path}: no such file; pass the path of an existing CSV file")
    if path.is_dir():
        raise _CommandError(f"{path}: is a folder; pass the path of a CSV file inside it")
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError as exc:
        raise _CommandError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not head.strip() and len(head) < 1 << 16:
        raise _CommandError(f"{path}: the file is empty; pass a CSV with a header line and data rows")


def _discover(args, data, target=None, features=None):
    """The result; its warnings are left to the summary, which prints them (each shown once)."""
    from discovery.errors import DiscoveryWarning
    from discovery.pipeline import discover

    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            d = discover(data, target=target, order=args.order, features=features, space=args.space,
                         seed=args.seed, device=args.device, crosscheck=args.crosscheck, members=args.members,
                         crosscheck_guide=args.guide, min_rows=args.min_rows, test_fraction=args.test_fraction,
                         crosscheck_budget=args.crosscheck_budget, reference_points=args.reference_points,
                         progress=not args.quiet and sys.stderr.isatty(),
                         decompose={"on": True, "off": False}.get(args.decompose, args.decompose),
                         time_budget=args.time_budget)
    except BaseException:
        _reemit(caught)
        raise
    summarised = set(d.warnings)
    _reemit(w for w in caught if not (issubclass(w.category, DiscoveryWarning)
                                      and any(str(w.message).endswith(text) for text in summarised)))
    return d


def _reemit(caught) -> None:
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


class _StderrLog(logging.Handler):
    """Log records as ``discovery: ...`` lines on the current ``sys.stderr``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"discovery: {record.getMessage()}", file=sys.stderr, flush=True)
        except Exception:  # a closed or broken stream must not stop the run
            self.handleError(record)


def _configure_logging(args) -> logging.Handler | None:
    """One line per stage on stderr: with --verbose, or when stderr is not a terminal (a log file)."""
    if getattr(args, "quiet", False) or not (getattr(args, "verbose", False) or not sys.stderr.isatty()):
        return None
    logger = logging.getLogger("discovery")
    handler = _StderrLog(logging.INFO)
    handler.previous_level = logger.level  # restored when the command ends
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def _finish(args, d, out: Path) -> int:
    """Print the result, then write the folder: a failed write never hides the formula."""
    from discovery.folders import OutputFolderError

    print(d.text(precision=6) if args.quiet else _summary_in_cli_terms(d.summary()), flush=True)
    try:
        with _interrupts_deferred():  # Ctrl-C while saving waits for a complete folder rather than a partial one
            d.save(out, report=not args.no_report)
    except OutputFolderError as exc:
        cause = exc.__cause__
        why = _one_line(cause) if cause is not None else _cli_syntax(_one_line(exc))
        raise _CommandError(f"--out {out}: the result printed above could not be saved ({why}); "
                            "rerun with another --out") from exc
    args.saved = out
    if not args.quiet:
        print(_written(out))
    return 0


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold SIGINT until the block ends; the block then finishes and the command reports what it saved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _written(out: Path) -> str:
    return f"results written to {out}/" + (" (open report.html)" if (out / "report.html").exists() else "")


def _run(args) -> int:
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    out, table = _precheck(args, args.data, args.target, features)
    return _finish(args, _discover(args, table, args.target, features), out)


def _demo(args) -> int:
    from discovery.data import bundled

    path = bundled(args.dataset)
    out, table = _precheck(args, path)  # a bundled table's target is its last column
    if not args.quiet:
        print(f"demo: discovering the law behind {path} (true law in datasets/README.md)", flush=True)
    return _finish(args, _discover(args, table, table.target_name), out)


# ------------------------------------------------------------------------------------- expand
def _expand(args) -> int:
    import numpy as np

    from discovery.folders import check_output_folder
    from discovery.modelio import read_model
    from discovery.validation import expand_command

    try:
        point = np.array([float(v) for v in args.at.replace(" ", "").split(",") if v], dtype=np.float64)
    except ValueError:
        raise _CommandError(f"--at {args.at!r}: pass comma-separated numbers such as 0.1,0.2") from None
    if args.out is not None:
        check_output_folder(args.out, call="--out")
    saved = read_model(args.model, call=args.model, trust_pickle=args.trust_pickle, trust_flag="--trust-pickle")
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    if names is None and saved.names:
        names = [f"log({n})" for n in saved.names] if saved.space == "log" else list(saved.names)
    if saved.names and len(point) != len(saved.names):
        raise _CommandError(f"--at has {len(point)} values; the model takes {len(saved.names)} inputs "
                            f"({', '.join(names or saved.names)})")
    _check_point(saved, point, args.radius, names, args.quiet)
    report = expand_command(saved.module, point, args.order, args.out, radius=args.radius, output=args.output,
                            names=names)
    if not args.quiet:
        print(report)
        if args.out:
            print(f"results written to {args.out}/")
    return 0


def _check_point(saved, point, radius: float, names, quiet: bool) -> None:
    """Refuse a point outside the training range (or in the wrong space); a polynomial there says nothing
    about the data, however well it matches the network."""
    import numpy as np

    if saved.input_min is None or saved.input_max is None:
        if not quiet:
            warnings.warn("the model file records no training range: the verdict below says how well the polynomial "
                          "matches the network, not whether the network was fit near this point")
        return
    lo, hi = saved.input_min, saved.input_max
    margin = _RANGE_MARGIN * (hi - lo)
    outside = np.flatnonzero((point < lo - margin) | (point > hi + margin))
    label = names or saved.names
    if len(outside):
        j = int(outside[0])
        where = (f"{label[j]} = {point[j]:g} is outside the training range [{lo[j]:.4g}, {hi[j]:.4g}] "
                 f"(with a margin of {_RANGE_MARGIN:.0%} of the range each side)")
        if saved.space == "log":
            raw = f" (raw {np.exp(lo[j]):.4g} to {np.exp(hi[j]):.4g})"
            with np.errstate(all="ignore"):
                logs = np.log(point)
            if np.all(point > 0) and np.all((logs >= lo - margin) & (logs <= hi + margin)):
                raise _CommandError(
                    f"--at: the model works on log inputs ({', '.join(label)}) and these values look raw; pass "
                    f"their logs, --at={','.join(f'{v:.6g}' for v in logs)}")
            raise _CommandError(f"--at: {where}{raw}; the model works on log inputs, pass a point inside the range")
        raise _CommandError(f"--at: {where}; the networks were never fit there, pass a point inside the range")
    beyond = np.flatnonzero((point - radius < lo - margin) | (point + radius > hi + margin))
    if len(beyond) and not quiet:
        warnings.warn(f"--radius {radius:g} reaches beyond the training range along "
                      f"{', '.join(label[j] for j in beyond)}: there the verdict is about the network, not the data")


# ------------------------------------------------------------------------------------- batch
def _batch(args) -> int:
    """The results table as CSV on stdout; progress on stderr; exit 2 when any job failed."""
    import csv

    path = Path(args.jobs)
    _readable(path)
    with open(path, newline="") as handle:  # every job needs its own folder: that is what a rerun skips by
        reader = csv.DictReader(handle, skipinitialspace=True)
        fields = [f.strip() for f in reader.fieldnames or []]
        if "out" not in fields:
            raise _CommandError(f"{path}: no 'out' column; give every job its own result folder in a column 'out'")
        for line, record in enumerate(reader, start=2):
            cells = {k.strip(): (v or "").strip() for k, v in record.items() if k is not None}
            if not cells.get("out") and any(cells.values()):
                raise _CommandError(f"{path} line {line}: the out cell is empty; give every job its own result folder")
    if args.index is not None and (args.scheduler or args.workers):
        raise _CommandError("--index runs one job here without a scheduler; drop --scheduler and --workers")
    from discovery.many import discover_many

    try:
        table = discover_many(path, client=args.scheduler, n_workers=args.workers, index=args.index,
                              threads_per_job=args.threads_per_job, report=not args.no_report,
                              progress=not args.quiet)
    except KeyboardInterrupt:
        print("discovery batch: interrupted; finished jobs are saved in their out folders and a rerun skips them",
              file=sys.stderr)
        return 130
    table.to_csv(sys.stdout, index=False)
    failed = int((table["error"] != "").sum())
    if failed:
        print(f"discovery batch: {failed} of {len(table)} jobs failed; see the error column", file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``discovery`` command; returns the exit code.

    Examples
    --------
    >>> import tempfile, discovery
    >>> out = tempfile.TemporaryDirectory()
    >>> main(["run", str(discovery.bundled("paper_quadratic")), "--order", "2", "--members", "2",
    ...       "--crosscheck", "off", "--no-report", "--out", out.name])
    y = 0.5*x1**2 + 0.5*x2
      LaTeX: 0.5 x_{1}^{2} + 0.5 x_{2}
    ...
    results written to ...
    0
    >>> out.cleanup()
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.saved = None
    handler = _configure_logging(args) if args.command in ("run", "demo") else None
    try:
        with warnings.catch_warnings():
            if getattr(args, "quiet", False):
                warnings.simplefilter("ignore")
            else:
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.showwarning = _show_warning
            return {"run": _run, "demo": _demo, "expand": _expand, "batch": _batch}[args.command](args)
    except KeyboardInterrupt:
        if args.saved is not None:  # the folder is complete; only the last line was cut short
            if not getattr(args, "quiet", False):
                print(_written(args.saved))
            return 0
        print(f"discovery {args.command}: interrupted; nothing was saved", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback unless asked
        if args.debug:
            raise
        print(_message(args.command, exc), file=sys.stderr)
        return 2 if _expected(exc) else 1
    finally:
        if handler is not None:
            logging.getLogger("discovery").removeHandler(handler)
            logging.getLogger("discovery").setLevel(handler.previous_level)


def _expected(exc: BaseException) -> bool:
    from discovery.errors import DiscoveryError

    return isinstance(exc, (_CommandError, DiscoveryError, OSError, ValueError))


def _message(command: str, exc: BaseException) -> str:
    text = _one_line(exc) if isinstance(exc, _CommandError) else _cli_syntax(_one_line(exc))
    if not _expected(exc):
        return (f"discovery {command}: unexpected {type(exc).__name__}: {text} "
                "(rerun with --debug for the traceback)")
    return f"discovery {command}: {text}"


_CALL = re.compile(r"^[A-Za-z_][\w.]*\((?:[^()]|\([^()]*\))*\): ")


def _cli_syntax(text: str) -> str:
    """A library message in the command's terms: no leading call form, flags instead of keywords."""
    text = _CALL.sub("", text, count=1)
    for name, flag in _FLAGS.items():
        keyword = rf"(?<![\w.-]){name}="
        text = re.sub(keyword + r"\.\.\.", flag, text)  # 'pass target=... to' -> 'pass --target to'
        text = re.sub(keyword + r"(?=[;,.:)]|$)", flag, text)  # 'pass min_rows=;' -> 'pass --min-rows;'
        text = re.sub(keyword + r"\s*", f"{flag} ", text)
    return text.strip()


def _summary_in_cli_terms(summary: str) -> str:
    """The result's summary with its warnings' advice in flags (``--target``, not ``target=...``)."""
    lines = []
    for line in summary.splitlines():
        text = line.lstrip()
        lines.append(line[: len(line) - len(text)] + _cli_syntax(text) if text.startswith("warning:") else line)
    return "\n".join(lines)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
