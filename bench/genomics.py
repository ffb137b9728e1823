#!/usr/bin/env python3
"""Benchmark the genomics example: lofn on 1 and 2 executor cores vs one serial run.

    .venv/bin/pip install -r bench/requirements.txt   # matplotlib, for the plot
    .venv/bin/python bench/genomics.py [--pairs 100000] [--repeats 3]

In one run, with the same simulated data (``example/advanced/prepare.py``)
and the same command (``align.align_command``), it times, ``--repeats`` times
each and interleaved so that noise spreads evenly:

* serial, minimap2 -t 1 and -t 2: one container over all reads, as
  ``prepare.serial_align`` runs it (the container's wall time);
* lofn on ``local[1]`` and on ``local[2]``: ``spark-submit align.py`` with
  ``--partitions`` partitions and one minimap2 thread per container, so at
  most 1 and 2 threads align at a time, the serial runs' thread counts
  (and the one merge container 1 and 2 compressing threads, ``-m``). The
  pipeline's time is measured by align.py from reading the FASTQ files to
  writing the merged BAM; the JVM's start is reported apart;
* the floor of any ``spark-submit`` on ``local[2]``: start the JVM and a
  SparkContext, stop them.

Each configuration's first distributed BAM is compared with the serial BAM
(``prepare.compare``). The medians are printed as a table, then issue 16's
targets with their results and the floors that bound them (lofn ``local[2]``
against serial ``-t 2``: at most x2 at 100,000 pairs, x1.6 at 400,000; the
whole ``spark-submit`` within 3 s of the pipeline), and saved as JSON
(``--json``); the Spark tasks of the median ``local[2]`` run, read from
Spark's event log, are drawn with the phases of every configuration in
``--plot`` (default ``docs/_static/genomics_stages.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "example", "advanced")
sys.path.insert(0, EXAMPLE)

import prepare  # noqa: E402

PHASES = [  # (key, label, colour)
    ("read", "count FASTQ lines, one container", "#9e9e9e"),
    ("align", "cut reads + minimap2 + samtools sort, per partition", "#3b7dd8"),
    ("merge", "samtools merge, every BAM in one container", "#4caf50"),
]
COLOURS = {key: colour for key, _, colour in PHASES}
# the targets of issue 16: lofn local[2] / serial minimap2 -t 2, by read pairs
TARGET_RATIOS = {100_000: 2.0, 400_000: 1.6}
# the whole spark-submit within this many seconds of the pipeline's own time
TARGET_SUBMIT_EXTRA = 3.0
FLOOR_SCRIPT = """from pyspark import SparkConf, SparkContext
sc = SparkContext(conf=SparkConf().setAppName("lofn genomics: JVM and Spark start"))
sc.setLogLevel("ERROR")
sc.stop()
"""


def stage_phases(timings: dict) -> dict[int, tuple[str, str]]:
    """Stage id -> (phase, label) from align.py's job descriptions."""
    phases = {}
    jobs = {job["job"]: job for job in timings["jobs"]}
    for stage in timings["stages"]:
        description = stage["description"] or ""
        if description.startswith("read"):
            phases[stage["stage"]] = ("read", "count lines")
        elif description.startswith("align"):
            phases[stage["stage"]] = ("align", "align + sort")
        elif description.startswith("merge"):
            # the merge container's job, then the job that reads its BAM on the driver
            first = min(job["job"] for job in jobs.values()
                        if (job["description"] or "").startswith("merge"))
            phases[stage["stage"]] = ("merge", "samtools merge" if stage["job"] == first
                                      else "BAM to the driver")
        else:
            phases[stage["stage"]] = ("read", stage["name"])
    return phases


def phase_seconds(timings: dict) -> dict[str, float]:
    """Wall time of each phase: from its first task's start to its last task's end."""
    phases = stage_phases(timings)
    spans: dict[str, list[float]] = {}
    for task in timings["tasks"]:
        phase = phases.get(task["stage"], ("read", ""))[0]
        span = spans.setdefault(phase, [task["start"], task["end"]])
        span[0], span[1] = min(span[0], task["start"]), max(span[1], task["end"])
    seconds = {phase: end - start for phase, (start, end) in spans.items()}
    seconds["driver"] = max(timings["seconds"] - sum(seconds.values()), 0.0)
    return seconds


def spark_submit(master: str, arguments: list[str], out_dir: str) -> float:
    """Run ``spark-submit --master master ARGUMENTS``; return its wall time in seconds."""
    python = sys.executable
    tmp = os.path.join(out_dir, "tmp")  # removed with out_dir, even after a kill
    os.makedirs(tmp, exist_ok=True)
    env = {**os.environ, "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python,
           "PATH": os.path.dirname(python) + os.pathsep + os.environ.get("PATH", ""),
           "TMPDIR": tmp}
    command = [os.path.join(os.path.dirname(python), "spark-submit"), "--master", master,
               "--conf", "spark.log.level=ERROR", "--conf", "spark.ui.enabled=false",
               *arguments]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.monotonic() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n"
                           f"{result.stderr[-4000:]}")
    return wall


def run_floor(master: str, out_dir: str) -> float:
    """The floor of any spark-submit: start the JVM and a SparkContext, stop them."""
    script = os.path.join(out_dir, "floor.py")
    with open(script, "w", encoding="utf-8") as handle:
        handle.write(FLOOR_SCRIPT)
    return spark_submit(master, [script], out_dir)


def run_distributed(master: str, data: str, partitions: int, threads: int, cores: int,
                    out_dir: str, tag: str) -> dict:
    """align.py on ``master``; samtools merge gets the ``cores`` the master has."""
    bam = os.path.join(out_dir, f"{tag}.bam")
    timings_path = os.path.join(out_dir, f"{tag}.json")
    wall = spark_submit(master, [
        os.path.join(EXAMPLE, "align.py"), os.path.join(data, "reads_1.fq"),
        os.path.join(data, "reads_2.fq"), os.path.join(data, "ref"), "-o", bam,
        "-p", str(partitions), "-t", str(threads), "-m", str(cores), "--timings", timings_path],
        out_dir)
    with open(timings_path, encoding="utf-8") as handle:
        timings = json.load(handle)
    timings["submit_seconds"] = wall
    return {"bam": bam, "timings": timings}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def plot(path: str, timings: dict, phase_medians: dict[str, dict[str, float]],
         totals: dict[str, float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    phases = stage_phases(timings)
    tasks = sorted(timings["tasks"], key=lambda task: (task["start"], task["stage"]))
    origin = timings["start"]
    master = timings["master"]
    slots = int(master[6:-1]) if master.startswith("local[") and master[6:-1].isdigit() else 0
    lanes: list[float] = []  # end time of the last task in each lane
    placed = []
    for task in tasks:
        # the driver hears of a task's end a little after its slot is free again
        free = [i for i, end in enumerate(lanes) if end <= task["start"] + 0.5]
        if free or (slots and len(lanes) >= slots):
            lane = min(free or range(len(lanes)), key=lambda i: lanes[i])
        else:
            lanes.append(0.0)
            lane = len(lanes) - 1
        lanes[lane] = task["end"]
        placed.append((lane, task))

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7),
                                      gridspec_kw={"height_ratios": [1.35, 1]})
    for lane, task in placed:
        phase, label = phases.get(task["stage"], ("read", ""))
        top.barh(lane, task["end"] - task["start"], left=task["start"] - origin, height=0.8,
                 color=COLOURS[phase], edgecolor="white", linewidth=0.6)
        if phase == "align" or label == "samtools merge":
            text = f"p{task['partition']}" if phase == "align" else "merge"
            if task["end"] - task["start"] > 0.035 * timings["seconds"]:
                top.text((task["start"] + task["end"]) / 2 - origin, lane, text, ha="center",
                         va="center", fontsize=7, color="white")
    top.set_yticks(range(len(lanes)))
    top.set_yticklabels([f"task slot {i + 1}" for i in range(len(lanes))])
    top.invert_yaxis()
    top.set_xlim(0, timings["seconds"])
    top.set_xlabel("seconds since the pipeline started")
    top.set_title(f"Spark tasks of one lofn run on {timings['master']}, "
                  f"{timings['partitions']} partitions ({title})", fontsize=10)
    fig.legend(handles=[Patch(color=colour, label=label) for _, label, colour in PHASES]
               + [Patch(color="#dddddd", label="driver, between stages")],
               fontsize=8, loc="upper center", ncol=3, frameon=False)

    names = list(totals)
    for row, name in enumerate(names):
        left = 0.0
        for key, _, colour in [*PHASES, ("driver", "driver, between stages", "#dddddd")]:
            seconds = phase_medians.get(name, {}).get(key, 0.0)
            if name.startswith("serial"):
                seconds = totals[name] if key == "align" else 0.0
            if seconds:
                bottom.barh(row, seconds, left=left, color=colour, height=0.6,
                            edgecolor="white", linewidth=0.6)
                left += seconds
        bottom.text(totals[name], row, f"  {totals[name]:.1f} s", va="center", fontsize=8)
    bottom.set_yticks(range(len(names)))
    bottom.set_yticklabels(names, fontsize=8)
    bottom.invert_yaxis()
    bottom.set_xlim(0, max(totals.values()) * 1.15)
    bottom.set_xlabel("median wall time, seconds")
    bottom.set_title("per phase, each configuration (serial: the one container)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def target_rows(pairs: int, serial: float, lofn: float, align_phase: float, submit: float,
                floor: float, epilogue: float) -> list[tuple[str, str, str, str]]:
    """(row, target, result, met) for issue 16's targets, and the floors that bound them."""
    def met(value: float, limit: float | None) -> str:
        return "" if limit is None else ("yes" if value <= limit else "no")

    ratio = TARGET_RATIOS.get(pairs)
    extra = submit - lofn
    return [
        (f"lofn local[2] / serial minimap2 -t 2, {pairs} pairs",
         f"<= x{ratio:.2f}" if ratio else "", f"x{lofn / serial:.2f}", met(lofn / serial, ratio)),
        ("floor: lofn local[2]'s align phase alone / serial -t 2", "",
         f"x{align_phase / serial:.2f}", ""),
        ("spark-submit align.py - its pipeline (local[2])", f"<= {TARGET_SUBMIT_EXTRA:.1f} s",
         f"{extra:.1f} s", met(extra, TARGET_SUBMIT_EXTRA)),
        ("floor: spark-submit of an empty SparkContext", "", f"{floor:.1f} s", ""),
        ("align.py after its pipeline (sc.stop, BAM summary)", f"<= {TARGET_SUBMIT_EXTRA:.1f} s",
         f"{epilogue:.1f} s", met(epilogue, TARGET_SUBMIT_EXTRA)),
    ]


def print_targets(rows: list[tuple[str, str, str, str]]) -> None:
    header = f"{'target (issue 16), medians':58} {'target':>9} {'result':>9} {'met':>4}"
    print("\n" + header)
    print("-" * len(header))
    for row, target, result, met in rows:
        print(f"{row:58} {target:>9} {result:>9} {met:>4}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(),
                                                       "lofn-genomics-bench"),
                        help="data directory, prepared if needed (default %(default)s)")
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--genome-size", type=int, default=2_000_000)
    parser.add_argument("-p", "--partitions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "_static",
                                                       "genomics_stages.png"))
    parser.add_argument("--json", default=os.path.join(ROOT, "bench", "results",
                                                       "genomics.json"))
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the data directory (it is removed at the end otherwise)")
    args = parser.parse_args(argv)
    # a SIGTERM ends spark-submit too (subprocess.run kills its child on any exception)
    # and removes the temp directories
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    subprocess.run(["bash", os.path.join(EXAMPLE, "build_image.sh")], check=True)
    prepared = prepare.prepare(args.data, genome_size=args.genome_size, pairs=args.pairs)
    out_dir = tempfile.mkdtemp(prefix="genomics-bench-")
    load_before = os.getloadavg()[0]
    configurations = [("serial", 1), ("serial", 2), ("local[1]", 1), ("local[2]", 2)]
    names = {("serial", 1): "serial, minimap2 -t 1", ("serial", 2): "serial, minimap2 -t 2",
             ("local[1]", 1): f"lofn local[1], {args.partitions} partitions x -t 1",
             ("local[2]", 2): f"lofn local[2], {args.partitions} partitions x -t 1"}
    runs: dict[str, list[dict]] = {names[c]: [] for c in configurations}
    checks: dict[str, dict] = {}
    floors: list[float] = []
    try:
        for repeat in range(args.repeats):
            floors.append(run_floor("local[2]", out_dir))
            print(f"[bench] floor: spark-submit of an empty SparkContext, run {repeat + 1}/"
                  f"{args.repeats}: {floors[-1]:.1f} s", flush=True)
            for master, threads in configurations:
                name = names[(master, threads)]
                tag = f"{master.replace('[', '').replace(']', '')}-t{threads}-r{repeat}"
                if master == "serial":
                    bam = os.path.join(out_dir, f"{tag}.bam")
                    seconds = prepare.serial_align(args.data, bam, threads)
                    runs[name].append({"seconds": seconds})
                    if repeat == 0 and threads == 2:
                        serial_bam = bam  # what every distributed BAM is compared with
                    else:
                        os.remove(bam)
                else:
                    result = run_distributed(master, args.data, args.partitions, 1, threads,
                                             out_dir, tag)
                    timings = result["timings"]
                    runs[name].append({"seconds": timings["seconds"],
                                       "submit_seconds": timings["submit_seconds"],
                                       "phases": phase_seconds(timings), "timings": timings})
                    if repeat == 0:
                        checks[name] = prepare.compare(serial_bam, result["bam"])
                    os.remove(result["bam"])
                print(f"[bench] {name}, run {repeat + 1}/{args.repeats}: "
                      f"{runs[name][-1]['seconds']:.1f} s", flush=True)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        if not args.keep_data:
            shutil.rmtree(args.data, ignore_errors=True)

    load_after = os.getloadavg()[0]
    totals = {name: median([run["seconds"] for run in items]) for name, items in runs.items()}
    phase_medians = {name: {key: median([run["phases"][key] for run in items
                                         if key in run.get("phases", {})])
                            for key in ("read", "align", "merge", "driver")}
                     for name, items in runs.items() if items and "phases" in items[0]}
    serial_1, serial_2 = totals[names[("serial", 1)]], totals[names[("serial", 2)]]
    local_1, local_2 = totals[names[("local[1]", 1)]], totals[names[("local[2]", 2)]]
    same = {name: result["header_equal"] and result["records_equal"]
            for name, result in checks.items()}

    cpu = platform.processor() or platform.machine()
    print(f"\ngenomics benchmark: {args.pairs} read pairs of 150 bases, "
          f"{args.genome_size / 1e6:g} Mb reference, {args.repeats} runs each, medians; "
          f"{os.cpu_count()} cores ({cpu}), load average {load_before:.1f} before and "
          f"{load_after:.1f} after; seconds")
    header = f"{'configuration':38} {'threads':>7} {'median':>7} {'runs':>20} {'vs serial':>10}"
    print(header)
    print("-" * len(header))
    for (master, threads) in configurations:
        name = names[(master, threads)]
        values = " ".join(f"{run['seconds']:.1f}" for run in runs[name])
        baseline = serial_1 if threads == 1 else serial_2
        ratio = "" if master == "serial" else f"x{totals[name] / baseline:.2f}"
        print(f"{name:38} {threads:>7} {totals[name]:7.1f} {values:>20} {ratio:>10}")
    print(f"\nscaling 1 -> 2 executor cores: lofn x{local_1 / local_2:.2f} faster "
          f"(serial minimap2 -t 1 -> -t 2: x{serial_1 / serial_2:.2f})")
    for name, phases in phase_medians.items():
        parts = ", ".join(f"{key} {value:.1f}" for key, value in phases.items())
        submit = median([run["submit_seconds"] for run in runs[name]])
        print(f"{name}: {parts} (spark-submit in all, with the JVM: {submit:.1f} s)")
    for name, ok in same.items():
        result = checks[name]
        print(f"{name}: {result['records']} records, "
              + ("identical to the serial BAM" if ok else
                 f"{result['differences']} records differ from the serial BAM"))
    local_2_runs = runs[names[("local[2]", 2)]]
    targets = target_rows(args.pairs, serial_2, local_2,
                          phase_medians[names[("local[2]", 2)]]["align"],
                          median([run["submit_seconds"] for run in local_2_runs]),
                          median(floors),
                          median([run["timings"]["epilogue_seconds"] for run in local_2_runs]))
    print_targets(targets)

    record = {"pairs": args.pairs, "genome_size": args.genome_size,
              "partitions": args.partitions, "repeats": args.repeats,
              "cores": os.cpu_count(), "load_average": [load_before, load_after],
              "prepared": prepared, "medians": totals,
              "phase_medians": phase_medians,
              "runs": {name: [{k: v for k, v in run.items() if k != "timings"} for run in items]
                       for name, items in runs.items()},
              "identical_to_serial": same, "floor_seconds": floors,
              "targets": [{"row": row, "target": target, "result": result, "met": met}
                          for row, target, result, met in targets]}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    print(f"results: {args.json}")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("no plot: install matplotlib (pip install -r bench/requirements.txt)")
    else:
        name = names[("local[2]", 2)]
        chosen = sorted(runs[name], key=lambda run: run["seconds"])[len(runs[name]) // 2]
        plot(args.plot, chosen["timings"], phase_medians, totals,
             f"{args.pairs} pairs, one minimap2 thread per container")
        print(f"plot: {args.plot}")
    if not all(same.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
