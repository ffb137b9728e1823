#!/usr/bin/env python3
"""lofn's speed benchmark: one command, one table of medians and same-run ratios.

Usage (from the repository root)::

    .venv/bin/python bench/run.py            # 3 repetitions (about 15-25 min)
    .venv/bin/python bench/run.py --quick    # 1 repetition, fewer partitions for the overhead

Runs three sub-benchmarks, each in its own process with its own SparkContext
(``overhead.py``, ``wordcount.py``, ``memory.py``; see their docstrings and
``bench/README.md``), all with ``TMPDIR`` and ``spark.local.dir`` in one
private temp root, then prints the table, checks that no lofn container or
temp directory was left behind, and removes the temp root. Raw samples and
the table are kept in ``bench/results/`` (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
IMAGE = "lofn/busybox:latest"
MB = 1_000_000


def median(values):
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------
# running the sub-benchmarks

def run_step(name: str, arguments: list[str], env: dict, stamp: str) -> dict | None:
    out = os.path.join(env["LOFN_BENCH_ROOT"], f"{name}.json")
    log_path = os.path.join(RESULTS, f"{stamp}-{name}.log")
    print(f"\n== {name}: {' '.join(arguments)}  (Spark's log: {os.path.relpath(log_path, ROOT)})",
          flush=True)
    start = time.monotonic()
    with open(log_path, "w") as log:
        code = subprocess.call([sys.executable, os.path.join(BENCH, f"{name}.py"), *arguments,
                                "--out", out], env=env, cwd=ROOT, stderr=log,
                               stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    if code != 0 or not os.path.exists(out):
        print(f"!! {name} failed with exit code {code} after {elapsed:.0f} s; end of its log:")
        with open(log_path, errors="replace") as log:
            print("".join(log.readlines()[-30:]))
        return None
    with open(out) as handle:
        result = json.load(handle)
    result["elapsed"] = elapsed
    print(f"== {name} done in {elapsed:.0f} s", flush=True)
    return result


# ---------------------------------------------------------------------------
# the table

class Table:
    def __init__(self) -> None:
        self.rows: list[tuple] = []  # (metric, value, ratio, target, result) or a section title
        self.failures = 0
        self.misses = 0

    def section(self, title: str) -> None:
        self.rows.append((title,))

    def row(self, metric: str, value: str = "", ratio: str = "", target: str = "",
            result: str = "") -> None:
        if result == "MISS":
            self.misses += 1
        self.rows.append((metric, value, ratio, target, result))

    def judge(self, metric: str, value: str, ratio: float, op: str, bound: float,
              ratio_text: str | None = None, unit: str = "x") -> None:
        ok = ratio <= bound if op == "<=" else ratio >= bound if op == ">=" else ratio < bound
        self.row(metric, value, ratio_text or f"{ratio:.2f}{unit}", f"{op} {bound:g}{unit}",
                 "PASS" if ok else "MISS")

    def text(self) -> str:
        header = ("metric", "median", "ratio", "target", "result")
        body = [r for r in self.rows if len(r) == 5]
        widths = [max(len(str(r[i])) for r in body + [header]) for i in range(5)]
        lines = []
        for r in self.rows:
            if len(r) == 1:
                lines.append("")
                lines.append(r[0])
                lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)))
            else:
                lines.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = []
        for r in self.rows:
            if len(r) == 1:
                lines += ["", f"**{r[0]}**", "",
                          "| metric | median | ratio | target | result |",
                          "| --- | ---: | ---: | --- | --- |"]
            else:
                lines.append("| " + " | ".join(str(c) for c in r) + " |")
        return "\n".join(lines).strip()


def overhead_rows(table: Table, data: dict) -> None:
    n, s, inside = data["partitions"], data["samples"], data["in_task"]
    reps = len(s["spark_python"])
    table.section(f"1. per-partition overhead of `cat input > output`: {data['master']}, "
                  f"{n} one-line partitions, {reps} reps, network {data['network']} "
                  "(seconds per partition: time inside the Spark tasks / N, bare runs: wall "
                  "time / N; ratio = median of per-rep ratios)")
    per = {
        "cli": [t / n for t in s["bare_cli"]],
        "sdk": [t / n for t in s["bare_sdk"]],
        "python": [t / n for t in inside["spark_python"]],
        "fresh": [t / n for t in inside["lofn_fresh"]],
        "reuse": [t / n for t in inside["lofn_reuse"]],
        "pipe": [t / n for t in inside["rdd_pipe"]],
        "spark_sdk": [t / n for t in inside["spark_sdk"]],
        # cross-check: whole jobs, less the identity job
        "job": [t / n for t in s["spark_python"]],
        "fresh_job": [(t - b) / n for t, b in zip(s["lofn_fresh"], s["spark_python"])],
        "reuse_job": [(t - b) / n for t, b in zip(s["lofn_reuse"], s["spark_python"])],
    }

    def ratio(a, b):
        return median([x / y for x, y in zip(per[a], per[b])])

    def sec(key):
        return f"{median(per[key]):.3f} s"

    table.row("bare `docker run --rm` via the CLI (reference)", sec("cli"), "1.00x")
    table.row("bare run via the Docker SDK (create/start/wait/remove)", sec("sdk"),
              f"{ratio('sdk', 'cli'):.2f}x CLI")
    table.judge("lofn map, fresh mode, vs bare CLI run", sec("fresh"), ratio("fresh", "cli"),
                "<=", 1.2)
    table.judge("lofn map, fresh mode, vs bare SDK run", sec("fresh"), ratio("fresh", "sdk"),
                "<=", 1.2)
    table.judge("lofn map, reuse mode (steady state), vs bare CLI run", sec("reuse"),
                ratio("reuse", "cli"), "<=", 0.05)
    table.judge("lofn map, reuse mode (steady state), vs bare SDK run", sec("reuse"),
                ratio("reuse", "sdk"), "<=", 0.05)
    if "reuse_first" in inside:
        per["first"] = list(inside["reuse_first"])  # one partition: not divided by N
        table.row("reuse mode: a warm container's one-time start (its first partition)",
                  sec("first"), f"{ratio('first', 'cli'):.2f}x CLI")
    if "lofn_fresh_traced" in inside:
        for mode in ("fresh", "reuse"):
            per[f"{mode}_traced"] = [t / n for t in inside[f"lofn_{mode}_traced"]]
            cost = median([a - b for a, b in zip(per[f"{mode}_traced"], per[mode])]) * 1000
            table.judge(f"lofn map, {mode} mode, with trace= (cost: traced - untraced)",
                        sec(f"{mode}_traced"), cost, "<=", 5, unit=" ms",
                        ratio_text=f"{cost:+.1f} ms ({ratio(f'{mode}_traced', mode):.2f}x)")
    table.row("Spark `rdd.pipe(\"docker run -i --rm ...\")`", sec("pipe"),
              f"{ratio('pipe', 'cli'):.2f}x CLI")
    table.row("Spark tasks each doing the bare SDK run (lofn's job minus lofn)",
              sec("spark_sdk"), f"{ratio('spark_sdk', 'sdk'):.2f}x SDK")
    table.row("Spark tasks with a pure-Python identity map (in task / whole job)",
              f"{median(per['python']):.3f} s / {median(per['job']):.3f} s")
    table.row("cross-check, (job - identity job) / N: lofn fresh mode", sec("fresh_job"),
              f"{ratio('fresh_job', 'sdk'):.2f}x SDK")
    table.row("cross-check, (job - identity job) / N: lofn reuse mode", sec("reuse_job"),
              f"{ratio('reuse_job', 'sdk'):.2f}x SDK")


def wordcount_rows(table: Table, data: dict) -> None:
    samples = data["samples"]
    reps = len(next(iter(samples.values()))["fresh_total"])
    table.section(f"2. word count of a {data['text_bytes'] / MB:.1f} MB text "
                  f"({data['distinct_words']} distinct words): {data['master']}, {reps} reps, "
                  "network " + data["network"] + " (seconds for the whole job, map and reduce "
                  "in one go; ratio = older design's time / this time, median of per-rep "
                  "ratios)")
    for partitions, s in sorted(samples.items(), key=lambda item: int(item[0])):
        p = int(partitions)

        def speedup(key):
            return median([o / t for o, t in zip(s["old_total"], s[key])])

        def sec(key):
            return f"{median(s[key]):.1f} s"

        table.row(f"P={p}: older design, lofn fresh map + sequential driver-side `rdd.reduce` "
                  f"({p - 1} containers in a row) (reference)", sec("old_total"), "1.00x")
        for key, label, bound in (("fresh_total", "lofn fresh: map + tree reduce", 4),
                                  ("reuse_total", "lofn reuse: map + tree reduce", 10)):
            if p == 128:
                table.judge(f"P={p}: {label}", sec(key), speedup(key), ">=", bound)
            else:
                table.row(f"P={p}: {label}", sec(key), f"{speedup(key):.2f}x")
        if "spark_floor" in s:
            table.row(f"P={p}: Spark floor: the same stages and tasks, no container work",
                      sec("spark_floor"), f"{speedup('spark_floor'):.2f}x")
        table.row(f"P={p}: `rdd.pipe(\"docker run -i --rm ...\")` + Python Counter reduce",
                  sec("pipe_total"), f"{speedup('pipe_total'):.2f}x")
        table.row(f"P={p}: diagnostic: the fresh map alone (shared by both designs); ratio = "
                  "the best fresh mode could do with a free reduce", sec("fresh_map"),
                  f"{speedup('fresh_map'):.2f}x")
        old_reduce = [o - m for o, m in zip(s["old_total"], s["fresh_map"])]
        tree_reduce = [t - m for t, m in zip(s["fresh_total"], s["fresh_map"])]
        table.row(f"P={p}: diagnostic: reduce phase (total - map alone), driver-side vs tree",
                  f"{median(old_reduce):.1f} s vs {median(tree_reduce):.1f} s")


def memory_rows(table: Table, data: dict) -> None:
    s = data["samples"]
    table.section(f"3. memory: one {data['bytes'] / 2**30:.2f} GiB partition "
                  f"({data['lines']} lines) mapped with `cat`, {data['master']}, "
                  f"{len(s['lofn_peak_bytes'])} reps (peak RSS of the Python worker, "
                  "VmHWM polled every 50 ms)")
    peak = median(s["lofn_peak_bytes"]) / MB
    table.judge("Python worker peak RSS, lofn map + count", f"{peak:.0f} MB", peak, "<", 300,
                ratio_text=f"max {max(s['lofn_peak_bytes']) / MB:.0f} MB", unit=" MB")
    table.row("Python worker peak RSS, same generator + count, no lofn (baseline)",
              f"{median(s['baseline_peak_bytes']) / MB:.0f} MB")
    seconds = median(s["lofn_seconds"])
    table.row("wall time of the lofn map + count", f"{seconds:.1f} s",
              f"{data['bytes'] / MB / seconds:.0f} MB/s")
    table.row("wall time of the generator + count alone (baseline)",
              f"{median(s['baseline_seconds']):.1f} s")


# ---------------------------------------------------------------------------
# leftovers

def leftovers(client, apps: list[str], root: str, wait: float = 30.0) -> tuple[list, list]:
    """This run's lofn/bench containers and lofn-* temp entries, after up to ``wait`` s.

    Warm containers go when their Spark worker ends (its lofn watchdog removes
    them), a moment after the SparkContext stops, hence the wait.
    """
    deadline = time.monotonic() + wait
    while True:
        ours = []
        for container in client.api.containers(all=True, filters={"label": "lofn"}):
            if container["Labels"].get("lofn.app") in apps or any(
                    m.get("Source", "").startswith(root) for m in container.get("Mounts", [])):
                ours.append(container)
        ours += client.api.containers(all=True, filters={"label": "lofnbench"})
        entries = []
        for directory, names, _ in os.walk(root):
            entries += [os.path.join(directory, n) for n in names if n.startswith("lofn")]
            names[:] = [n for n in names if not n.startswith("lofn")]
        if not (ours or entries) or time.monotonic() > deadline:
            return ours, entries
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 repetition and 8 partitions for the overhead (a smoke run)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument("--only", default="overhead,wordcount,memory,streaming",
                        help="comma-separated sub-benchmarks to run (default all)")
    parser.add_argument("--network", default="none",
                        help="network of every container (default none; 'bridge' is "
                             "docker run's default)")
    parser.add_argument("--wordcount-partitions", default="8,32,128",
                        help="partition counts of the word count (default 8,32,128; the "
                             "targets are judged at 128)")
    parser.add_argument("--memory-bytes", type=int, default=1 << 30,
                        help="size of the memory benchmark's partition (default 1 GiB)")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    started, wall = time.monotonic(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(RESULTS, exist_ok=True)

    import docker

    client = docker.from_env()
    client.ping()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.check_call([sys.executable, os.path.join(ROOT, "scripts", "build_images.py")])
    root = tempfile.mkdtemp(prefix="lofnbench-")
    free = shutil.disk_usage(root).free
    if "memory" in steps and free < 2.5 * args.memory_bytes + (1 << 30):
        shutil.rmtree(root)
        sys.exit(f"only {free / 2**30:.1f} GiB free in {root}: the memory benchmark writes "
                 f"{2 * args.memory_bytes / 2**30:.1f} GiB there")
    env = dict(os.environ, TMPDIR=root, LOFN_BENCH_ROOT=root, LOFN_BENCH_NETWORK=args.network,
               PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, BENCH, os.environ.get("PYTHONPATH"))
                                          if p))
    load_before = os.getloadavg()
    print(f"lofn benchmark, {wall}: {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}, Docker {client.version()['Version']}, "
          f"load average {load_before[0]:.1f}; {reps} reps; temp root {root}", flush=True)

    results: dict[str, dict | None] = {}
    try:
        for step in steps:
            if step == "overhead":
                arguments = ["--reps", str(reps), "--partitions", "8" if args.quick else "20"]
            elif step == "wordcount":
                arguments = ["--reps", str(reps), "--partitions", args.wordcount_partitions]
            elif step == "memory":
                arguments = ["--reps", str(reps), "--bytes", str(args.memory_bytes)]
            elif step == "streaming":
                arguments = ["--reps", str(reps)]
            else:
                sys.exit(f"unknown sub-benchmark {step!r}")
            results[step] = run_step(step, arguments, env, stamp)
        apps = [app for r in results.values() if r for app in r.get("apps", [])]
        ours, entries = leftovers(client, apps, root)
    finally:
        for container in client.api.containers(all=True, filters={"label": "lofnbench"}):
            client.api.remove_container(container["Id"], force=True)
        shutil.rmtree(root, ignore_errors=True)

    from streaming import rows as streaming_rows  # bench/, the script's directory

    table = Table()
    builders = {"overhead": ("1. per-partition overhead", overhead_rows),
                "wordcount": ("2. word count", wordcount_rows),
                "memory": ("3. memory", memory_rows),
                "streaming": ("4. streaming", streaming_rows)}
    for step in steps:
        title, rows = builders[step]
        if results[step] is None:
            table.section(f"{title}: FAILED (see its log)")
            table.failures += 1
        else:
            rows(table, results[step])
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    everyone = subprocess.run(["docker", "ps", "-a", "--filter", "label=lofn"],
                              capture_output=True, text=True).stdout.strip()
    footer = [
        f"total run time: {elapsed / 60:.1f} min ({elapsed:.0f} s); load average "
        f"{load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end "
        f"(1-min; {os.cpu_count()} cores)",
        f"this run's lofn containers left: {len(ours)}"
        + (" (" + ", ".join(c["Names"][0].lstrip("/") for c in ours) + ")" if ours else ""),
        f"lofn-* temp entries left in the temp root: {len(entries)}"
        + (" (" + ", ".join(entries) + ")" if entries else "") + "; temp root removed",
        "`docker ps -a --filter label=lofn` (any session on this engine):",
        *("    " + line for line in (everyone or "(header missing)").splitlines()),
    ]
    print("\n" + "=" * 100)
    print(f"lofn benchmark, {wall}, {os.cpu_count()} cores (shared, noisy: compare within "
          "this run only)")
    print(table.text())
    print()
    print("\n".join(footer))
    with open(os.path.join(RESULTS, f"{stamp}.md"), "w") as handle:
        handle.write(f"Run of {wall}, {reps} reps, `{' '.join(sys.argv[1:]) or '(defaults)'}`\n\n"
                     + table.markdown() + "\n\n" + "\n".join(
                         f"- {line}" if not line.startswith("    ") else line
                         for line in footer) + "\n")
    with open(os.path.join(RESULTS, f"{stamp}.json"), "w") as handle:
        json.dump({"started": wall, "reps": reps, "argv": sys.argv[1:], "elapsed": elapsed,
                   "load": [load_before, load_after], "results": results,
                   "left_containers": [c["Names"] for c in ours], "left_entries": entries},
                  handle, indent=1)
    print(f"\nraw samples and this table: bench/results/{stamp}.json, bench/results/{stamp}.md")
    return 1 if table.failures or ours or entries else 0


if __name__ == "__main__":
    sys.exit(main())
