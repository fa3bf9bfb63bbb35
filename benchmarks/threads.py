"""Thread counts on an idle and on a busy machine: torch's default, 1 thread, all cores,
and boomerang's default (the idle cores, ``boomerang.threads.default_threads``).

Runs ``boomerang sample`` as a fresh process per measurement (the thread count is
fixed at start-up) on the bundled model with the job of issue 13 (one digit,
level 0.5, 8 samples) while 0, ``cores`` and ``2 x cores`` busy-loop processes
run beside it. The script starts and stops that background load itself. Each
cell is the median of ``--repeats`` runs with a 95% interval (t distribution
over the runs); the last column says whether the default was within 10% of the
best of 1 thread and all cores.

    .venv/bin/python benchmarks/threads.py --repeats 3

Writes threads.json into ``--out`` (default ``benchmarks/out/``, git-ignored;
``--out benchmarks/results`` refreshes the committed copy) when the whole run ends.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGIT = ROOT / "examples" / "digits" / "7.png"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_out_argument, make_parser, save_json  # noqa: E402


def _busy(stop) -> None:  # one core's worth of load
    x = 0
    while not stop.is_set():
        for _ in range(10000):
            x += 1


def _ci95(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return (xs[0], xs[0])
    from scipy import stats  # scikit-image depends on scipy

    m, s = statistics.mean(xs), statistics.stdev(xs)
    h = stats.t.ppf(0.975, len(xs) - 1) * s / len(xs) ** 0.5
    return (m - h, m + h)


def run_job(threads: str, args) -> float:
    """Seconds of one `boomerang sample` run: threads is 'torch' (torch's default), 'auto'
    (boomerang's default) or a number."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    cmd = [sys.executable, "-m", "boomerang.cli", "sample", str(DIGIT), "--level", str(args.level),
           "--num-samples", str(args.num_samples), "--seed", "0", "--no-progress"]
    if threads == "torch":
        cmd += ["--threads", "torch"]
    elif threads != "auto":
        cmd += ["--threads", threads]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + ["--out", out], env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return dt


def main(argv=None) -> int:
    p = make_parser(__doc__)
    p.add_argument("--repeats", type=int, default=3, help="runs per cell")
    p.add_argument("--level", type=float, default=0.5, help="noise level of the job")
    p.add_argument("--num-samples", type=int, default=8, help="samples of the job")
    p.add_argument("--loads", default=None,
                   help="comma-separated numbers of busy processes (default: 0, cores, 2 x cores)")
    add_out_argument(p)
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    loads = [int(v) for v in args.loads.split(",")] if args.loads else [0, cores, 2 * cores]
    configs = ["1", str(cores), "torch", "auto"]
    rows = []
    for load in loads:
        stop = mp.Event()
        procs = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(load)]
        for q in procs:
            q.start()
        time.sleep(1.0 if load else 0.0)
        try:
            times = {c: [] for c in configs}
            for _ in range(args.repeats):  # interleaved, so that drifts in the machine's load hit every config
                for c in configs:
                    times[c].append(run_job(c, args))
        finally:
            stop.set()
            for q in procs:
                q.join(timeout=5)
        med = {c: statistics.median(v) for c, v in times.items()}
        best = min(med["1"], med[str(cores)])
        row = {"busy_processes": load, "seconds": times, "median": med,
               "ci95": {c: _ci95(v) for c, v in times.items()},
               "auto_vs_best": med["auto"] / best, "torch_vs_best": med["torch"] / best}
        rows.append(row)
        print(f"busy {load}: " + "  ".join(f"{c}: {med[c]:.1f}s" for c in configs)
              + f"  auto/best {row['auto_vs_best']:.2f}", flush=True)
    print()
    print(f"| busy processes | 1 thread | {cores} threads | torch default | boomerang default | default / best |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        cells = [f"{r['median'][c]:.1f} s [{r['ci95'][c][0]:.1f}, {r['ci95'][c][1]:.1f}]" for c in configs]
        print(f"| {r['busy_processes']} | " + " | ".join(cells) + f" | {r['auto_vs_best']:.2f} |")
    job = {"image": str(DIGIT.relative_to(ROOT)), "level": args.level, "num_samples": args.num_samples,
           "model": "bundled", "repeats": args.repeats, "cores": cores}
    save_json("threads", {"job": job, "rows": rows, "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
              args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
