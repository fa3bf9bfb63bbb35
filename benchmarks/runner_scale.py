"""Runner at scale: the driver's peak memory and items/s for 10k .. 200k inputs, against a bare Pillow loop.

    .venv/bin/python benchmarks/runner_scale.py [--sizes 10000 50000 200000] [--engines local ray] [--ray-in-flight N ...] [--repeats R]
        [--model ID | -] [--plan-only] [--tmp DIR] [--name NAME] [--out DIR]

For each size N, writes N small PNGs (28x28 gray, 16 distinct images, 1,000 per
sub-folder) to a temporary folder, then runs, each in a fresh process (so that its
peak RSS, ``ru_maxrss``, is its own):

* ``bare``: one process, one loop: list the files (``imageio.iter_image_files``), read
  each with Pillow (``Image.open`` + ``load``), encode it as PNG and write it as
  durably as the runner does, with the same system calls (a new temporary file in the
  destination folder opened with ``O_EXCL``, write, fsync, close, rename);
* ``local``: the dataset job (``boomerang.tasks.Task``: ``plan_job``, model load,
  ``execute_job``) at level 0 on the bundled pixel model (the identity: no model call),
  local engine, blocks of 64, one torch thread: scan, fingerprint, item index, read,
  atomic PNG writes, journal, metadata.jsonl, report;
* ``ray`` (``--engines ... ray``): the same job with ``--engine ray --workers 1``. Its
  seconds are split at the first journal entry: ``ray_start_s`` (from ``execute_job``'s start:
  Ray's start, the actor's start, its imports and model load, the first block) and
  ``ray_blocks_per_s`` / ``ray_ms_per_block`` over the blocks after the first (the steady rate).
  ``--ray-in-flight N [N ...]`` runs one ray arm per value (``ray@N``), with
  ``ray_engine.TASKS_IN_FLIGHT_PER_ACTOR`` set to N (2: Ray Data's default).

Reported per run: wall seconds (the imports, of diffusers' schedulers among them, and the
model load are fixed start-up costs, timed apart and left out of items/s),
items/s, CPU seconds (``time.process_time``: every thread of the process; on a shared machine
items per CPU second is the steadier comparison), the load average, the process's RSS after its
imports and its peak RSS (VmHWM). The job names its model (``--model``, default the bundled digit
model, as a job at scale would); ``--model -`` leaves it out, and the job then chooses it by
decoding every input first (``boomerang.default_model``, about 100 us of CPU per file). Targets (issue 22):
local peak RSS growth <= 50 MB from 10k to 200k items; local items/s >= 0.8x bare.
With ``--repeats R`` the arms run interleaved R times; the summary takes each arm's best
items/s and highest peak, and the median over the repeats of the ratio of items per CPU second of
each repeat's runner and bare runs (the steadier figure on a shared machine). ``--tmp /dev/shm`` puts inputs and outputs on tmpfs, where fsync
costs nothing and the comparison is of CPU work alone. Writes runner_scale.json into --out
(default benchmarks/out/). ``--plan-only`` times planning alone (``plan_job``), wall and CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import add_out_argument, machine, make_parser, save_json

PER_FOLDER = 1000


def _rss_kb() -> int:
    for line in open("/proc/self/status", encoding="utf-8"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _peak_kb() -> int:
    """VmHWM: this process's peak RSS (unlike ru_maxrss, not inherited across fork + exec)."""
    for line in open("/proc/self/status", encoding="utf-8"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def make_inputs(folder: Path, n: int) -> None:
    """N PNGs of 28x28 gray noise (16 distinct), PER_FOLDER per sub-folder (written plainly)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(16):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(buf, "PNG")
        blobs.append(buf.getvalue())
    for i in range(n):
        sub = folder / f"d{i // PER_FOLDER:05d}"
        if i % PER_FOLDER == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:07d}.png").write_bytes(blobs[i % len(blobs)])


def child_bare(src: Path, out: Path) -> dict:
    import io

    from PIL import Image

    from boomerang.imageio import iter_image_files

    rss0 = _rss_kb()
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    made = set()
    for f in iter_image_files(src, unique=False):
        rel = f.relative_to(src)
        dst = out / rel
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        with Image.open(f) as im:
            im.load()
            buf = io.BytesIO()
            im.save(buf, "PNG")
        # the runner's durable write (fileio.atomic_write_bytes), in its cheapest plain form: a new
        # temporary file beside the target (O_EXCL, mode 0o666 less the umask), write, fsync, rename
        tmp = os.path.join(dst.parent, f".{dst.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, buf.getvalue())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dst)
        n += 1
    return {"items": n, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "load_seconds": 0.0,
            "rss_start_mb": rss0 / 1024, "peak_rss_mb": _peak_kb() / 1024}


def child_job(src: Path, out: Path, engine: str, model: str | None, write_threads: int = 0) -> dict:
    import torch

    engine, _, in_flight = engine.partition("@")
    arrivals: list[float] = []  # ray: when each block's journal entry reached the driver
    if engine == "ray":
        from boomerang.tasks import ray_engine

        if in_flight:
            ray_engine.TASKS_IN_FLIGHT_PER_ACTOR = int(in_flight)
        run_blocks = ray_engine.run_blocks

        def timed_run_blocks(job, todo, finished, *args, **kwargs):
            def timed(entry):
                finished(entry)
                arrivals.append(time.perf_counter())
            return run_blocks(job, todo, timed, *args, **kwargs)

        ray_engine.run_blocks = timed_run_blocks

    from boomerang.settings import SampleSettings
    from boomerang.tasks import Task
    from boomerang.tasks.blocks import attach_model
    from boomerang.tasks.job import JobSettings, NoOptions
    from boomerang.tasks.runner import execute_job, plan_job

    import boomerang.planning  # noqa: F401  (imports diffusers' schedulers: a fixed start-up cost, not timed)

    torch.set_num_threads(1)
    if write_threads:  # the writer threads of write_block (0: the runner's own number)
        from boomerang.tasks import blocks

        blocks.WRITE_THREADS = write_threads
    rss0 = _rss_kb()
    t0, c0 = time.perf_counter(), time.process_time()
    task = Task()
    js = JobSettings(inputs=str(src), out=str(out), engine=engine, progress=False, threads=1,
                     workers=1 if engine == "ray" else None)
    job = plan_job(task, SampleSettings(level=0.0, batch_size=64, num_samples=1, model=model), NoOptions(), js)
    t1, c1 = time.perf_counter(), time.process_time()
    attach_model(job, 1)
    t2, c2 = time.perf_counter(), time.process_time()
    job.threads, job.block_size = 1, 64
    rc = execute_job(job)
    t3, c3 = time.perf_counter(), time.process_time()
    split = {}
    if len(arrivals) >= 2:
        n = len(arrivals) - 1  # blocks after the first (every block but the last is full)
        split = {"ray_start_s": arrivals[0] - t2, "ray_blocks": len(arrivals),
                 "ray_ms_per_block": 1e3 * (arrivals[-1] - arrivals[0]) / n,
                 "ray_blocks_per_s": n / (arrivals[-1] - arrivals[0]), "ray_end_s": t3 - arrivals[-1]}
    return {**split, "items": len(job.items), "rc": rc, "seconds": (t1 - t0) + (t3 - t2), "load_seconds": t2 - t1,
            "cpu_seconds": (c1 - c0) + (c3 - c2), "plan_seconds": t1 - t0, "plan_cpu_seconds": c1 - c0,
            "model": model or "(default: chosen from the inputs)",
            "rss_start_mb": rss0 / 1024, "peak_rss_mb": _peak_kb() / 1024}


def child_plan(src: Path, out: Path, model: str | None) -> dict:
    """Planning alone (``plan_job``: scan, item index, outputs, names): wall and CPU seconds."""
    from boomerang.settings import SampleSettings
    from boomerang.tasks import Task
    from boomerang.tasks.job import JobSettings, NoOptions
    from boomerang.tasks.runner import plan_job

    import boomerang.planning  # noqa: F401  (a fixed start-up cost, not timed)

    rss0 = _rss_kb()
    t0, c0 = time.perf_counter(), time.process_time()
    js = JobSettings(inputs=str(src), out=str(out), engine="local", progress=False, threads=1)
    job = plan_job(Task(), SampleSettings(level=0.0, batch_size=64, num_samples=1, model=model), NoOptions(), js)
    t1, c1 = time.perf_counter(), time.process_time()
    return {"items": len(job.items), "seconds": t1 - t0, "cpu_seconds": c1 - c0, "load_seconds": 0.0,
            "model": model or "(default: chosen from the inputs)",
            "rss_start_mb": rss0 / 1024, "peak_rss_mb": _peak_kb() / 1024}


def run_child(arm: str, src: Path, out: Path, model: str, write_threads: int = 0) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", arm, "--src", str(src), "--dst", str(out), "--model", model,
           "--write-threads", str(write_threads)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{arm} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["items_per_s"] = res["items"] / res["seconds"]
    res["items_per_cpu_s"] = res["items"] / res["cpu_seconds"]
    shutil.rmtree(out, ignore_errors=True)
    return res


def main() -> None:
    if "--child" in sys.argv:
        arm = sys.argv[sys.argv.index("--child") + 1]
        src = Path(sys.argv[sys.argv.index("--src") + 1])
        dst = Path(sys.argv[sys.argv.index("--dst") + 1])
        model = sys.argv[sys.argv.index("--model") + 1]
        model = None if model == "-" else model
        res = (child_bare(src, dst) if arm == "bare" else child_plan(src, dst, model) if arm == "plan"
               else child_job(src, dst, arm, model, int(sys.argv[sys.argv.index("--write-threads") + 1])))
        print(json.dumps(res))
        return
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000], help="input counts")
    p.add_argument("--engines", nargs="+", default=["local"], choices=("local", "ray"), help="job engines")
    p.add_argument("--ray-in-flight", type=int, nargs="+", default=None,
                   help="one ray arm per value, with ray_engine.TASKS_IN_FLIGHT_PER_ACTOR set to it (2: Ray Data's default; "
                        "default: none, the engine's own value)")
    p.add_argument("--plan-only", action="store_true",
                   help="time planning alone (plan_job: wall and CPU seconds per size), no bare loop, no execution")
    p.add_argument("--repeats", type=int, default=1, help="interleaved runs of each arm (best items/s reported)")
    p.add_argument("--model", default="ddpm-mnist5k",
                   help="the job's --model (default: the bundled digit model, named as a job at scale names it); "
                        "'-' for none: the job then chooses it by decoding every input (boomerang.default_model)")
    p.add_argument("--write-threads", type=int, default=0,
                   help="writer threads of the job's write_block (0: the runner's own, blocks.WRITE_THREADS)")
    p.add_argument("--tmp", default=None, help="folder for the generated inputs and outputs (default: system temp)")
    p.add_argument("--name", default="runner_scale", help="file name of the results (NAME.json in --out)")
    add_out_argument(p)
    a = p.parse_args()
    if a.ray_in_flight and "ray" in a.engines:
        a.engines = [e for e in a.engines if e != "ray"] + [f"ray@{k}" for k in a.ray_in_flight]
    runs = []
    for n in a.sizes:
        tmp = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=a.tmp))
        try:
            t = time.perf_counter()
            make_inputs(tmp / "in", n)
            print(f"{n} inputs written in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
            arms = ["plan"] if a.plan_only else ["bare", *a.engines]
            for rep, arm in [(r, arm) for r in range(a.repeats) for arm in arms]:  # interleaved
                res = {"n": n, "arm": arm, "repeat": rep, **run_child(arm, tmp / "in", tmp / "out", a.model, a.write_threads)}
                runs.append(res)
                print(f"n={n:>7} {arm:>5}: {res['seconds']:8.1f}s  {res['items_per_s']:8.1f} items/s  "
                      f"cpu {res['cpu_seconds']:7.1f}s {res['items_per_cpu_s']:7.1f} items/cpu-s  "
                      + (f"plan {res['plan_seconds']:.1f}s (cpu {res['plan_cpu_seconds']:.1f}s)  " if "plan_seconds" in res else "")
                      + f"load {os.getloadavg()[0]:.1f}  "
                      f"rss start {res['rss_start_mb']:6.1f} MB  peak {res['peak_rss_mb']:6.1f} MB"
                      + (f"  (model load {res['load_seconds']:.1f}s apart)" if arm not in ("bare", "plan") else "")
                      + (f"  ray: start {res['ray_start_s']:.1f}s, then {res['ray_ms_per_block']:.1f} ms/block "
                         f"({res['ray_blocks']} blocks), end {res['ray_end_s']:.1f}s" if "ray_start_s" in res else ""),
                      flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    best = {}
    for r in runs:  # per (arm, n): the best items/s, the highest peak RSS
        b = best.setdefault((r["arm"], r["n"]), dict(r))
        b["items_per_s"] = max(b["items_per_s"], r["items_per_s"])
        b["items_per_cpu_s"] = max(b["items_per_cpu_s"], r["items_per_cpu_s"])
        b["peak_rss_mb"] = max(b["peak_rss_mb"], r["peak_rss_mb"])
    for arm in ["plan"] if a.plan_only else ["bare", *a.engines]:
        by_n = {n: r for (arm_, n), r in best.items() if arm_ == arm}
        if len(by_n) >= 2:
            lo, hi = min(by_n), max(by_n)
            summary[f"{arm}_peak_rss_growth_mb_{lo}_to_{hi}"] = by_n[hi]["peak_rss_mb"] - by_n[lo]["peak_rss_mb"]
        for n, r in by_n.items():
            if arm == "plan":
                summary[f"plan_cpu_us_per_item_{n}"] = 1e6 * r["cpu_seconds"] / r["items"]
            bare = best.get(("bare", n))
            if bare and arm != "bare":
                summary[f"{arm}_vs_bare_throughput_{n}"] = r["items_per_s"] / bare["items_per_s"]
                summary[f"{arm}_vs_bare_cpu_throughput_{n}"] = r["items_per_cpu_s"] / bare["items_per_cpu_s"]
    for n in sorted({r["n"] for r in runs}):  # the steadier figure: the median of each repeat's ratio
        for arm in a.engines:
            pairs = [(b, r) for b in runs for r in runs if b["n"] == r["n"] == n and b["arm"] == "bare"
                     and r["arm"] == arm and b["repeat"] == r["repeat"]]
            if pairs:
                ratios = sorted(r["items_per_cpu_s"] / b["items_per_cpu_s"] for b, r in pairs)
                mid = len(ratios) // 2
                summary[f"{arm}_vs_bare_cpu_throughput_{n}_median_of_repeats"] = (
                    ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2)
    for n in sorted({r["n"] for r in runs}):  # the ray engine's start-up and steady rate, medians of repeats
        for arm in a.engines:
            split = [r for r in runs if r["n"] == n and r["arm"] == arm and "ray_start_s" in r]
            for key in ("ray_start_s", "ray_ms_per_block") if split else ():
                vals = sorted(r[key] for r in split)
                mid = len(vals) // 2
                summary[f"{arm}_{key[4:]}_{n}_median"] = vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2
    for k, v in summary.items():
        print(f"{k}: {v:.3f}")
    save_json(a.name, {"machine": machine(), "tmp": a.tmp, "model": a.model, "write_threads": a.write_threads, "runs": runs, "summary": summary}, a.out)


if __name__ == "__main__":
    main()
