"""The ``discovery`` command: ``run`` a CSV, ``demo`` on a bundled dataset, ``expand`` a model file.

Every expected failure ends with exit code 2 (1 for an unexpected one) and a single line on
stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

__all__ = ["main"]

_DEMO = "paper_quadratic"


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="discovery",
        description="Find the formula behind tabular data (exact Taylor expansion of trained networks).",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="{run,demo,expand}")

    run = sub.add_parser("run", help="discover the formula behind a CSV file")
    run.add_argument("data", help="CSV file (header line; the target is the last column unless --target)")
    run.add_argument("--target", default=None, help="column to explain (default: last column)")
    run.add_argument("--features", default=None, help="comma-separated feature columns (default: all others)")
    _common(run, default_out="results")

    demo = sub.add_parser("demo", help="run on a bundled dataset (y = (x1^2 + x2)/2)")
    demo.add_argument("--dataset", default=_DEMO, help=f"bundled dataset name (default: {_DEMO})")
    _common(demo, default_out=None, default_crosscheck="off")

    exp = sub.add_parser("expand", help="expand a saved model at a point and validate the polynomial")
    exp.add_argument("model", help="model file: a whole pickled torch module or TorchScript")
    exp.add_argument("--at", required=True, help="expansion point, e.g. 0.1,0.2")
    exp.add_argument("--order", type=int, default=4, help="degree of the polynomial (default 4)")
    exp.add_argument("--radius", type=float, default=1.0, help="half-width of the interval checked (default 1)")
    exp.add_argument("--output", type=int, default=0, help="model output to expand (default 0)")
    exp.add_argument("--names", default=None, help="comma-separated input names")
    exp.add_argument("--out", default=None, help="folder for the expansion, table, plot and report")
    exp.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def _common(p: argparse.ArgumentParser, default_out, default_crosscheck: str = "auto") -> None:
    p.add_argument("--order", default="2", help="Taylor order 1-8 or 'auto' (default 2)")
    p.add_argument("--space", default="auto", choices=["auto", "raw", "log"], help="variable space (default auto)")
    p.add_argument("--crosscheck", default=default_crosscheck, choices=["auto", "off", "operon", "pysr", "gplearn"],
                   help=f"symbolic-regression cross-check (default {default_crosscheck})")
    p.add_argument("--guide", default="structure", choices=["structure", "off"],
                   help="narrow the cross-check's search with the structure the networks' derivatives show "
                        "(inputs with influence, additive blocks); default structure")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--members", type=int, default=5, help="networks in the ensemble (default 5)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (default auto)")
    p.add_argument("--out", default=default_out, help="result folder (written atomically)"
                   + (f"; default {default_out}/<data name>" if default_out else "; default results/demo"))
    p.add_argument("--no-report", action="store_true", help="skip the HTML report and figures")
    p.add_argument("--quiet", action="store_true", help="print only the formula")


def _order(value: str):
    return "auto" if value == "auto" else int(value) if value.isdigit() else value


def _discover(args, data, target=None, features=None):
    from discovery.pipeline import discover

    return discover(data, target=target, order=_order(args.order), features=features, space=args.space,
                    seed=args.seed, device=args.device, crosscheck=args.crosscheck, members=args.members,
                    crosscheck_guide=args.guide, progress=not args.quiet and sys.stderr.isatty())


def _print_result(d, out: Path | None, quiet: bool) -> None:
    if quiet:
        print(d.text(precision=6))
        return
    print(d.summary())
    if out is not None:
        print(f"results written to {out}/" + ("" if not (out / "report.html").exists() else " (open report.html)"))


def _run(args) -> int:
    from discovery.report import check_folder

    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    out = Path(args.out)
    if args.out == "results":
        out = out / Path(args.data).stem
    check_folder(out, "discovery run --out", args.data)  # fail before training, not after
    d = _discover(args, args.data, args.target, features)
    d.save(out, report=not args.no_report)
    _print_result(d, out, args.quiet)
    return 0


def _demo(args) -> int:
    from discovery.data import bundled
    from discovery.report import check_folder

    path = bundled(args.dataset)
    if not args.quiet:
        print(f"demo: discovering the law behind {path} (true law in datasets/README.md)", flush=True)
    out = Path(args.out) if args.out else Path("results") / "demo"
    check_folder(out, "discovery demo --out", str(path))
    d = _discover(args, path)
    d.save(out, report=not args.no_report)
    _print_result(d, out, args.quiet)
    return 0


def _expand(args) -> int:
    from discovery.validation import expand_command

    names = [n.strip() for n in args.names.split(",")] if args.names else None
    report = expand_command(args.model, args.at, args.order, args.out, radius=args.radius, output=args.output,
                            names=names)
    if not args.quiet:
        print(report)
        if args.out:
            print(f"results written to {args.out}/")
    return 0


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
    from discovery.errors import DiscoveryError

    try:
        with warnings.catch_warnings():
            if getattr(args, "quiet", False):
                warnings.simplefilter("ignore")
            else:
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.showwarning = _show_warning
            return {"run": _run, "demo": _demo, "expand": _expand}[args.command](args)
    except KeyboardInterrupt:
        print("discovery: interrupted", file=sys.stderr)
        return 130
    except (DiscoveryError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"discovery {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback unless asked
        if args.debug:
            raise
        print(f"discovery {args.command}: unexpected {type(exc).__name__}: {_one_line(exc)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
