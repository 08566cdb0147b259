"""Run every benchmark (what `make bench` does) and summarise them in benchmarks/results/.

    python benchmarks/run_all.py                       # all, sized to finish in < 15 min on an idle 2-core CPU
    python benchmarks/run_all.py --only step memory    # a subset (names as below, without "bench_")
    python benchmarks/run_all.py --sweep               # also the speed-switch sweep that chose the defaults

Each benchmark runs in its own process (one at a time: they time the same cores) and writes
`benchmarks/results/<name>.md` (+ .json) with the command, date and machine in its header;
benchmarks that only print (bench_infer_memory) get their output saved the same way here.
`benchmarks/results/summary.md` collects the headline ratios of this run; with `--only` / `--skip`,
the rows of the benchmarks not run this time are carried over from the previous summary, marked
with the date they were measured.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import REPO, RESULTS, Report  # noqa: E402

# name -> arguments; sized so the whole set stays under 15 minutes on an idle 2-core CPU
BENCHMARKS: dict[str, list[str]] = {
    "multigrid": ["benchmarks/bench_multigrid.py", "--rounds", "2"],
    "step": ["benchmarks/bench_step.py", "--rounds", "3"],
    "data": ["benchmarks/bench_data.py"],
    "memory": ["benchmarks/bench_memory.py", "--tensors"],
    "infer_memory": ["benchmarks/bench_infer_memory.py"],
}
SWEEP = ["benchmarks/bench_step.py", "--sweep", "--rounds", "3"]
BUDGET_S = 15 * 60


def run_one(name: str, args: list[str], timeout: float) -> tuple[str, float, str]:
    """(status, seconds, combined output) of one benchmark, echoing its output as it runs."""
    start = time.perf_counter()
    lines: list[str] = []
    process = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
            if time.perf_counter() - start > timeout:
                process.kill()
                process.wait()
                return f"killed after {timeout:.0f} s", time.perf_counter() - start, "".join(lines)
        code = process.wait()
    except KeyboardInterrupt:
        process.kill()
        raise
    return ("ok" if code == 0 else f"exit {code}"), time.perf_counter() - start, "".join(lines)


def save_printed_output(name: str, args: list[str], output: str, seconds: float) -> None:
    """For benchmarks that print instead of writing a report: keep their output with a header."""
    report = Report(f"bench_{name}", f"{args[0]} (output captured by run_all.py)", argv=args)
    report.started -= datetime.timedelta(seconds=seconds)
    for key in ("threads", "load average (1/5/15 min) at start"):  # run_all's, not the benchmark's
        report.machine.pop(key, None)
    report.blocks.append("```\n" + output.strip() + "\n```")
    report.write()


def headline(name: str) -> str:
    """The key figure of a benchmark's JSON, for the summary."""
    path = RESULTS / f"bench_{name}.json"
    if not path.is_file():
        return "(no results file)"
    data = json.loads(path.read_text())
    if name == "multigrid":
        return (f"measured {data['measured']:.2f}x vs FLOP bound {data['flop_bound']:.2f}x "
                f"(= {data['measured'] / data['flop_bound']:.2f} of the bound; pixel bound {data['pixel_bound']:.2f}x)")
    if name == "step":
        return "; ".join(f"{c['shape'][0]}x{c['shape'][0]}x{c['shape'][1]}: {c['speedup']:.2f}x vs {c['against']}"
                         for c in data.get("compare", []))
    if name == "memory":
        return "; ".join(f"{ {'none': 'fp32'}.get(r['amp'], r['amp'])} {r['checkpointing']}: step RSS -{r['rss_reduction']:.0%}"
                         + (f", tensors -{r['tensor_reduction']:.0%}" if "tensor_reduction" in r else "")
                         for r in data.get("results", []) if r["checkpointing"] != "off")
    if name == "data":
        return data.get("headline", "see bench_data.md")
    return f"see bench_{name}.md"


def earlier_rows(running: set[str], results: Path = RESULTS) -> list[list[str]]:
    """The previous summary's rows (name, status, seconds, headline, when measured) of the
    benchmarks not run now, so a partial run does not drop them from the summary. A summary
    written before the JSON held its rows is read from its Markdown table."""
    try:
        previous = json.loads((results / "summary.json").read_text())
    except (OSError, ValueError):
        return []
    rows = previous.get("rows")
    if rows is None:
        when = str(previous.get("date", "?"))[:16].replace("T", " ") + " UTC"
        try:
            lines = (results / "summary.md").read_text().splitlines()
        except OSError:
            lines = []
        cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
        rows = [[*c[:4], when] for c in cells if len(c) >= 4]
    return [list(map(str, row)) for row in rows
            if isinstance(row, list) and len(row) == 5 and row[0] in BENCHMARKS and row[0] not in running]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=None)
    p.add_argument("--skip", nargs="+", choices=list(BENCHMARKS), default=[])
    p.add_argument("--sweep", action="store_true", help="also run bench_step.py --sweep")
    p.add_argument("--timeout", type=float, default=1200, help="seconds before one benchmark is stopped")
    args = p.parse_args(argv)
    chosen = {n: a for n, a in BENCHMARKS.items() if (args.only is None or n in args.only) and n not in args.skip}
    if args.sweep:
        chosen["step_sweep"] = SWEEP

    earlier = earlier_rows(set(chosen))
    summary = Report("summary", "Benchmark summary (run_all.py)")
    rows, failed = [], 0
    total_start = time.perf_counter()
    for name, bench_args in chosen.items():
        print(f"\n=== {name}: {' '.join(bench_args)}", flush=True)
        status, seconds, output = run_one(name, bench_args, args.timeout)
        if status == "ok" and name == "infer_memory":
            save_printed_output(name, bench_args, output, seconds)
        failed += status != "ok"
        rows.append([name, status, f"{seconds:.0f}", headline(name) if status == "ok" else output.strip()[-300:]])
    total = time.perf_counter() - total_start
    run_at = summary.started.strftime("%Y-%m-%d %H:%M UTC")
    summary.data["rows"] = [[*row, run_at] for row in rows] + earlier
    rows = [[*row, "this run"] for row in rows] + earlier
    summary.table(["benchmark", "status", "seconds", "headline", "measured"], rows,
                  caption=f"Total {total:.0f} s (budget {BUDGET_S} s on an idle machine). Details: "
                          "benchmarks/results/bench_<name>.md.")
    summary.write()
    if total > BUDGET_S:
        print(f"note: took {total:.0f} s, over the {BUDGET_S} s budget (is the machine busy? see the load averages "
              "in the result headers)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
