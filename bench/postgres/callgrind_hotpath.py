"""The Postgres proxy's own work per transaction in instructions: bench_hotpath.py under
callgrind, old code against new. Deterministic, so it holds on a loaded machine where CPU
time per transaction moves by a third with the other load (bench_hotpath's µs, ab_cpu's
pgbench runs): a change of 1% shows.

For each tree (a base commit's, via bench/revision.py, and this checkout) and mode,
bench_hotpath runs under `valgrind --tool=callgrind` four times: with N and 2N transactions,
each once with its transactions run and once without (--repeat 0: the same imports,
session and chunks); the instructions of N transactions are the difference of the two
differences. Several minutes per tree and mode. Not a test: nothing asserts.

    python bench/postgres/callgrind_hotpath.py [--base 739e888|DIR] [--new DIR]
        [--modes simple,prepared] [--transactions 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOTPATH = Path(__file__).with_name("bench_hotpath.py")
WARM = 2000  # bench_hotpath's warm-up: _run(relay, conn, chunks[:2000])

# only now: bench/ on the path holds a directory named pdp/
sys.path.append(str(REPO / "bench"))
from revision import tree_of  # noqa: E402


def instructions(tree: Path, mode: str, transactions: int, repeat: int, out: Path) -> int:
    """The instructions one bench_hotpath process executes (callgrind's total): the tree's
    own bench_hotpath where it has one (its stand-ins match its code: a base commit's
    proxy reads other attributes of them than this checkout's), else this checkout's."""
    env = {**os.environ, "PYTHONPATH": f"{tree}/proto:{tree}"}
    own = tree / "bench" / "postgres" / HOTPATH.name
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         str(own if own.exists() else HOTPATH), "--transactions", str(transactions),
         "--repeat", str(repeat), "--modes", mode],
        cwd=tree, env=env, check=True, capture_output=True,
    )  # fmt: skip
    found = re.search(r"^(?:totals|summary): (\d+)", out.read_text(errors="replace"), re.M)
    if found is None:
        raise RuntimeError(f"no totals in {out}")
    return int(found.group(1))


def per_transaction(tree: Path, mode: str, n: int, scratch: Path) -> float:
    runs = {
        (length, repeat): instructions(tree, mode, length, repeat, scratch / f"{length}.{repeat}")
        for length in (n, 2 * n)
        for repeat in (0, 1)
    }
    ran = (runs[2 * n, 1] - runs[2 * n, 0]) - (runs[n, 1] - runs[n, 0])
    # bench_hotpath warms up on the first WARM of its transactions before its run: below
    # 2 x WARM transactions, N and 2N differ by more than N run transactions
    return ran / ((min(WARM, 2 * n) + 2 * n) - (min(WARM, n) + n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base",
        default="",
        help="a commit to compare against, or a directory holding a tree (e.g. a copy of "
        "this checkout before a change)",
    )
    parser.add_argument("--new", type=Path, default=REPO, help="the tree to run as new")
    parser.add_argument("--modes", default="simple,prepared")
    parser.add_argument("--transactions", type=int, default=2000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="portcullis-callgrind-"))
    try:
        trees = {"new": args.new.resolve()}
        if args.base:
            base = Path(args.base)
            base = base.resolve() if base.is_dir() else tree_of(args.base, tmp / "base")
            trees = {"base": base, **trees}
        for mode in args.modes.split(","):
            figures = {}
            for name, tree in trees.items():
                scratch = tmp / f"{name}-{mode}"
                scratch.mkdir()
                figures[name] = per_transaction(tree, mode, args.transactions, scratch)
                print(f"{mode:9} {name:4} {figures[name]:9,.0f} instructions per transaction",
                      flush=True)  # fmt: skip
            if figures.get("base"):
                print(f"{mode:9} new/base {figures['new'] / figures['base']:.3f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
