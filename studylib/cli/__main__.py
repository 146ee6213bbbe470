"""Command line: ``python -m studylib {list,run,report,changes,sweep,sweep-report,data}``.

Examples::

    python -m studylib list
    python -m studylib run --profile default
    python -m studylib run --profile smoke --study 06_taylor_pruning --set seeds=[0,1] --device cpu
    python -m studylib run --profile default --dry-run      # what would run, from where; runs nothing
    python -m studylib run --profile paper --device cuda:1 --resume
    python -m studylib run --profile paper --data-root /data/studylib --set data_kwargs={csv: b.csv}
    python -m studylib data check --profile paper           # which data sets are there
    python -m studylib data prepare                         # download what torchvision can
    python -m studylib report --profile default
    python -m studylib changes --before df7ccf0 --reasons CHANGES.yaml   # writes CHANGES.md
    python -m studylib sweep --file params/sweeps/taylor_seeds_smoke.yaml --executor dask --workers 2
    python -m studylib sweep-report --file params/sweeps/taylor_seeds_smoke.yaml --metric <name>

Exit codes: 0 success; 1 a study/point failed (``data``: a data set is missing); 2 invalid arguments, profile, study,
parameter or value, an output folder that cannot be written or is in use by another run
(nothing was run); 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import argparse
import sys

from .parameters import ValidationError, check_device


def _device(value: str) -> str:
    """argparse type of ``--device``: auto, cpu, cuda or cuda:N."""
    try:
        return check_device(value)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--device: ")) from None


def _add_cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="cache root of trained models and posteriors for the kernels "
                        "(default: $STUDYLIB_CACHE, else outputs/cache)")


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="where the real data sets are (default: $STUDYLIB_DATA, else "
                        "~/.cache/studylib/data); a study's relative data_root is taken from it")


def _add_dirs(p: argparse.ArgumentParser, *, output_root: bool = True) -> None:
    p.add_argument("--notebooks-dir", default=None, metavar="DIR",
                   help="folder of study notebooks (default: notebooks/)")
    p.add_argument("--params-dir", default=None, metavar="DIR",
                   help="folder of <study>/<profile>.yaml files (default: params/)")
    if output_root:
        p.add_argument("--output-root", default=None, metavar="DIR",
                       help="outputs go to DIR/<profile>/<study>/ (default: outputs/)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m studylib",
        description="Run, report and sweep the kit's study notebooks with Papermill.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list studies, their profiles and parameters")
    _add_dirs(p, output_root=False)

    p = sub.add_parser("run", help="execute studies with Papermill, then write REPORT.md")
    p.add_argument("--profile", default="default",
                   help="smoke (the notebook defaults) or a params/<study>/<profile>.yaml "
                        "(default: default)")
    p.add_argument("--study", action="extend", nargs="+", default=None, metavar="S",
                   help="study id(s): --study A B or --study A --study B (default: every study)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override parameters (values parsed as YAML: seeds=[0,1]); "
                        "--set a=1 b=2 or --set a=1 --set b=2; a mapping merges into the "
                        "profile's key by key: --set 'data_kwargs={csv: b.csv}'")
    p.add_argument("--replace", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="like --set, but a mapping replaces the profile's whole")
    p.add_argument("--device", default=None, type=_device, metavar="DEVICE",
                   help="auto, cpu, cuda or cuda:N, injected into every notebook (default: "
                        "the profile's or notebook's own, normally auto)")
    _add_data_root(p)
    p.add_argument("--download", action="store_true",
                   help="let the studies download a missing torchvision data set (MNIST, "
                        "CIFAR-10, GTSRB); off by default, see also `data prepare`")
    p.add_argument("--strict-determinism", action="store_true",
                   help="fail an op that has no deterministic kernel (torch's "
                        "use_deterministic_algorithms without warn_only; sets "
                        "STUDYLIB_DETERMINISTIC=strict for the notebooks) instead of warning")
    p.add_argument("--timeout", type=int, default=None, metavar="SECONDS",
                   help="fail a cell that runs longer than this (default: no limit)")
    p.add_argument("--dry-run", action="store_true",
                   help="print, per study, the merged parameters and where each value comes "
                        "from (notebook, YAML, --set), the output folder, the cached models of "
                        "its last run that exist and its last runtime; run nothing")
    p.add_argument("--resume", action="store_true",
                   help="skip a study whose results.json is ok and whose inputs (merged "
                        "parameters, device, code and notebook) are unchanged since it ran")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                   help="run N studies at once, the cores shared between them (each gets "
                        "cores // N torch threads and worker processes; the longest studies, "
                        "by their last runtime, start first); default 1. Another thread "
                        "count moves float results as another machine does")
    _add_cache_dir(p)
    _add_dirs(p)

    p = sub.add_parser("report", help="write <output-root>/<profile>/REPORT.md from results")
    p.add_argument("--profile", default="default", help="profile folder to report on")
    p.add_argument("--readme", action="store_true",
                   help="also rewrite the headline verdicts table in README.md")
    p.add_argument("--output-root", default=None, metavar="DIR",
                   help="default: outputs/")
    p.add_argument("--params-dir", default=None, metavar="DIR",
                   help="folder of <study>/<profile>.yaml files, for the valid profile names "
                        "(default: params/)")
    p.add_argument("--notebooks-dir", default=None, metavar="DIR",
                   help="folder of study notebooks (default: notebooks/)")

    p = sub.add_parser("changes", help="write CHANGES.md: every claim's verdict at a git "
                                       "revision and now, with the reason for each change")
    p.add_argument("--before", required=True, metavar="REV",
                   help="git revision whose committed outputs/<profile>/*/results.json are 'before'")
    p.add_argument("--profile", default="default", help="profile folder to compare")
    p.add_argument("--reasons", default=None, metavar="YAML",
                   help="study/claim_id -> {kind, why}; required for every verdict that moved")
    p.add_argument("--out", default="CHANGES.md", metavar="FILE", help="default: CHANGES.md")

    p = sub.add_parser("sweep", help="run a grid of parameter overrides (local or Dask)")
    p.add_argument("--file", required=True, metavar="F", help="sweep YAML (params/sweeps/*.yaml)")
    p.add_argument("--executor", default="local", choices=["local", "dask"],
                   help="local: one point after another here; dask: one task per point")
    p.add_argument("--scheduler", default=None, metavar="tcp://host:port",
                   help="address of a running Dask scheduler (default: start a LocalCluster "
                        "on 127.0.0.1)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="LocalCluster workers (default: 2); ignored with --scheduler")
    p.add_argument("--device", default=None, type=_device, metavar="DEVICE",
                   help="auto, cpu, cuda or cuda:N: override the sweep file's device")
    p.add_argument("--output-root", default=None, metavar="DIR",
                   help="points go to DIR/<sweep name>/<point id>/ (default: outputs/sweeps/)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate every point and print its id, overrides and state; run nothing")
    _add_data_root(p)
    p.add_argument("--download", action="store_true",
                   help="let the points download a missing torchvision data set")
    _add_cache_dir(p)
    _add_dirs(p, output_root=False)

    p = sub.add_parser("sweep-report", help="CSV + Markdown table and a figure of a sweep")
    p.add_argument("--file", required=True, metavar="F", help="the sweep YAML that was run")
    p.add_argument("--metric", default=None,
                   help="metric to plot (default: the sweep file's `metric`, else the first)")
    p.add_argument("--x", default=None, metavar="PARAM",
                   help="grid parameter on the x axis (default: the first that varies)")
    p.add_argument("--output-root", default=None, metavar="DIR",
                   help="default: outputs/sweeps/")
    _add_dirs(p, output_root=False)

    p = sub.add_parser("data", help="check for, or download, the data sets a profile reads")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for action, text in (("check", "say, for every data set the profile reads from disk, "
                                   "whether it is found, where, the layout and how to get it; "
                                   "exit 1 when one is missing (downloads nothing)"),
                         ("prepare", "download the missing data sets torchvision can "
                                     "(MNIST, CIFAR-10, GTSRB), then check")):
        q = dsub.add_parser(action, help=text, description=text)
        q.add_argument("--profile", default="paper",
                       help="the profile whose data sets to look at (default: paper)")
        q.add_argument("--study", action="extend", nargs="+", default=None, metavar="S",
                       help="study id(s) (default: every study)")
        q.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                       help="parameter overrides, as for run (e.g. a data_kwargs of your own)")
        q.add_argument("--dataset", action="extend", nargs="+", default=None, metavar="NAME",
                       help="these data sets instead of a profile's (mnist, cifar10, gtsrb, "
                            "mammo_folder)")
        _add_data_root(q)
        _add_dirs(q, output_root=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            from .runner import cmd_list
            return cmd_list(args)
        if args.command == "run":
            from .runner import cmd_run
            return cmd_run(args)
        if args.command == "report":
            from .report import cmd_report
            return cmd_report(args)
        if args.command == "changes":
            from .changes import cmd_changes
            return cmd_changes(args)
        if args.command == "sweep":
            from .sweep import cmd_sweep
            return cmd_sweep(args)
        if args.command == "sweep-report":
            from .sweep import cmd_sweep_report
            return cmd_sweep_report(args)
        if args.command == "data":
            from .data import cmd_data
            return cmd_data(args)
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
