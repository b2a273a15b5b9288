"""`python -m minivae.gradcheck`: check every hand-written gradient against central differences, print a table,
and exit 1 if any row fails (checks/finite_differences.py says how a row passes; checks/table.py what the rows are).
"""

# ruff: noqa: E402 (the stop handling comes first: run/stops.py)
from minivae.run import stops

if __name__ == "__main__":
    stops.early()  # a stop while the rest loads: one line, exit 130

import sys
import time

from minivae import cli
from minivae.checks.finite_differences import ROUNDING, SMALL_ENTRY, STEP, TOLERANCE, passes, run_check
from minivae.core import backend


def check_all(args):
    """Run and print the whole table (checks.table.CHECKS) on the backend --device asks for. Returns the exit code."""
    from minivae.checks.table import CHECKS

    backend.use_device(args.device)
    if args.only:
        CHECKS = [check for check in CHECKS if args.only.lower() in f"{check.group} {check.name}".lower()]
        if not CHECKS:
            raise cli.UsageError(f"--only {args.only}: no row of the table has that in its group or name")
    print(f"Every hand-written gradient against central differences (h = {STEP:g} unless a row says, float64, "
          f"{backend.name}).")
    print(f"verdict: the largest |a - n| / max(|a| + |n|, {SMALL_ENTRY:g} * the array's largest |a| + |n|) of "
          "analytic a and numeric n,")
    print(f"over the entries where |a - n| exceeds the numeric error bound |g_h - g_2h| + {ROUNDING:g} "
          "max(1, |f|) / h.")
    print(f"A row FAILs when its verdict > {TOLERANCE:g} or when it raises; the command then exits 1.")
    print("raw: the same error over every entry, to show the finite differences' own noise; it decides nothing.\n")
    width = max(len(check.name) for check in CHECKS)
    print(f"{'group':8s} {'check':{width}s} {'raw':>9s} {'verdict':>9s}  worst entry")
    failed, start = 0, time.perf_counter()
    for check in CHECKS:
        verdicts, raws, problem = run_check(check)
        ok = passes(verdicts, problem)
        failed += not ok
        if problem is not None:
            print(f"{check.group:8s} {check.name:{width}s} {'-':>9s} {'-':>9s}  FAIL  {problem[:80]}")
            continue
        worst = max(verdicts, key=lambda k: (verdicts[k], raws[k]))
        print(f"{check.group:8s} {check.name:{width}s} {max(raws.values()):9.1e} {verdicts[worst]:9.1e}  {worst}"
              f"{'' if ok else '   FAIL'}")
    seconds = time.perf_counter() - start
    print(f"\n{len(CHECKS)} checks in {seconds:.1f} s: " +
          ("all gradients match" if not failed else f"{failed} check(s) FAIL"))
    return 1 if failed else 0


def main(argv=None):
    """Entry point of `python -m minivae.gradcheck`: exit 0 when every row passes, 1 when one fails."""
    parser = cli.Parser(prog="python -m minivae.gradcheck",
                        description="Check every hand-written gradient against finite differences.")
    cli.add_device_option(parser)
    parser.add_argument("--only", metavar="TEXT", help="check only the rows whose group or name contains TEXT "
                                                       "(any case), e.g. --only relu")
    return cli.run(check_all, parser.parse_args(argv), keep_handlers=argv is None)


if __name__ == "__main__":
    sys.exit(main())
