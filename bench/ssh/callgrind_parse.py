"""Instructions per new SSH exec line read by the PDP (pdp/domain/ssh_input.py), by shape.

Owns the figure the PDP's reading of a command line is judged by: for each line shape
(`N` in it replaced by a new number each time, so no reading is remembered), the
instructions one reading costs — exec_input() as the PDP calls it (a fast reading where
the line allows one), and bashlex's reading of the same line (_exec_input, never the fast
path) beside it. Each figure is two runs of a small Python process under `valgrind
--tool=callgrind`, one reading no line and one reading `--lines` of them; the difference
divided. Deterministic to a fraction of a per cent: no event loop, no other process.

    python bench/ssh/callgrind_parse.py [--lines 40] ["shape with N" ...]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHAPES = (
    "echo N",
    "ls -la /var/logN | head -5",
    "grep -r 'foo barN' /etc",
    "git log --format='%h %s' -N && echo ok",
    "cat /etc/hostsN; df -h",
    "sh -c 'uptime; echo N'",
)
READER = """
import sys
sys.path.insert(0, {repo!r})
from pdp.domain import ssh_input
read = ssh_input.exec_input if sys.argv[1] == "fast" else ssh_input._exec_input
read("warm up; ls -l 'x' | head")
ssh_input._exec_input("warm up; ls -l 'x' | head")
for i in range(int(sys.argv[2])):
    read(sys.argv[3].replace("N", str(i)))
"""


def instructions(script: Path, way: str, n: int, shape: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, str(script), way, str(n), shape],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    found = re.search(r"Collected : (\d+)", run.stderr)
    assert found is not None, run.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("shapes", nargs="*", default=list(SHAPES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "reader.py"
        script.write_text(READER.format(repo=str(REPO)))
        print(f"instructions per new line ({args.lines} lines, callgrind): as read, bashlex's")
        for shape in args.shapes:
            per = {}
            for way in ("fast", "bashlex"):
                base = instructions(script, way, 0, shape)
                per[way] = (instructions(script, way, args.lines, shape) - base) // args.lines
            print(f"  {per['fast']:>11,} {per['bashlex']:>11,}  {shape}")


if __name__ == "__main__":
    main()
