"""``python -m benchmarks [--only NAME ...] [--reps 11] [--device auto] [--out outputs/bench]
[--readme README.md]``."""

from __future__ import annotations

import argparse
import sys
import traceback

from studylib.core import paths
from studylib.core.runtime import apply_thread_setting, seed_everything, select_device

from .cases import CASES
from .harness import BenchmarkMismatch, CaseResult, update_readme, write_reports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--only", nargs="*", choices=sorted(CASES), help="run only these cases")
    ap.add_argument("--reps", type=int, default=11,
                    help="timed repetitions (median reported; >= 5). 11 by default: on a shared "
                         "2-core VM single timings of a 0.5 s call vary by +-30%%")
    ap.add_argument("--device", default="cpu", help="auto | cpu | cuda (default cpu)")
    ap.add_argument("--out", default=str(paths.OUTPUTS_DIR / "bench"), help="output folder")
    ap.add_argument("--readme", default=None,
                    help="also rewrite this README's benchmark section (make bench: README.md)")
    args = ap.parse_args(argv)
    if args.reps < 5:
        ap.error("--reps must be >= 5 (the report gives a median of at least five runs)")
    apply_thread_setting()
    device = select_device(args.device)
    results: list[CaseResult] = []
    failed = False
    for name in args.only or list(CASES):
        seed_everything(0)
        print(f"== {name}", flush=True)
        try:
            res = CASES[name](device, args.reps)
        except BenchmarkMismatch as exc:
            failed = True
            res = CaseResult(name, name, "MISMATCH", error=str(exc))
        except Exception as exc:  # keep the other cases going; report the failure
            failed = True
            traceback.print_exc()
            res = CaseResult(name, name, "-", error=f"{type(exc).__name__}: {exc}")
        print(f"   {res.equality}; ratio={res.ratio}; target {res.target}: {res.target_met}"
              + (f"; ERROR {res.error}" if res.error else ""), flush=True)
        results.append(res)
    json_path, md_path = write_reports(results, device, paths.resolve(args.out))
    print(f"wrote {json_path} and {md_path}")
    if args.readme:
        print(f"updated {update_readme(args.readme, json_path)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
