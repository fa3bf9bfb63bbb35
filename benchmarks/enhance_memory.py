"""Peak memory of ``enhance --scale 1`` (or ``sample``) against the image's size, and its projection to 48 MP.

    .venv/bin/python benchmarks/enhance_memory.py [--sides 256 512 1024] [--level 0.1] [--steps 10]
        [--model ddpm-mnist5k | tiny] [--tile-size S] [--scale 1] [--consistency] [--name NAME] [--out DIR]
        [--command sample [--channels 3] [--in-memory]]

``--command sample`` runs ``boomerang sample IN --out OUT --level L --steps N --model M --threads 1
--num-samples 1`` instead (with ``--model tiny``: a tiny fully convolutional pixel model, which
``sample`` denoises in windows of 512 above 1 MP, on the bounded path where it applies);
``--in-memory`` keeps that run on the in-memory path (the child sets
``enhance.banded.BANDED_MIN_PIXELS`` out of reach, as the tests do), for comparison; ``--channels
3``: an RGB image and a 3-channel tiny model.

For each side S, writes one S x S gray PNG (a smooth ramp plus noise) and runs, in a
fresh process, ``boomerang enhance IN --out OUT --scale 1 --level L --steps N --model M
--threads 1`` (the CLI's ``main`` in that process; ``--scale S --consistency``: S x S larger
outputs with ILVR, the sizes and pixels then the output's); the process reports its peak RSS
(``VmHWM``) and wall seconds. With the bundled 28x28 digit model, a window is 28 pixels
and every denoiser evaluation runs the model on every window of the image, so the time
grows with the area as well. A least-squares line ``peak = a + b * pixels`` over the
sizes gives the bytes per pixel and the projection to 48 MP (8000 x 6000).

Writes enhance_memory.json (or NAME.json) into --out (default benchmarks/out/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import add_out_argument, machine, make_parser, save_json

CHILD = r"""
import json, os, sys, time
t = time.perf_counter()
if os.environ.get("BENCH_IN_MEMORY"):  # --in-memory: the bounded path out of reach
    from boomerang.enhance import banded
    banded.BANDED_MIN_PIXELS = 1 << 62
from boomerang.cli import main
rc = main(sys.argv[1:])
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t, "peak_rss_mb": peak / 1024}))
"""


def make_image(path: Path, side: int, channels: int = 1) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(side)
    ramp = np.add.outer(np.arange(side), np.arange(side)) / (2 * side) * 200
    shape = (side, side) if channels == 1 else (side, side, channels)
    img = np.clip((ramp if channels == 1 else ramp[..., None]) + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)
    Image.fromarray(img, "L" if channels == 1 else "RGB").save(path)


def run(side: int, a, tmp: Path) -> dict:
    src = tmp / f"in{side}.png"
    make_image(src, side, a.channels)
    out = tmp / f"out{side}"
    argv = [a.command, str(src), "--out", str(out), "--level", str(a.level),
            "--steps", str(a.steps), "--model", a.model_dir, "--threads", "1", "--seed", "0"]
    argv += ["--scale", str(a.scale)] if a.command == "enhance" else ["--num-samples", "1"]
    if a.consistency:
        argv += ["--consistency"]
    if a.tile_size:
        argv += ["--tile-size", str(a.tile_size)]
    t = time.perf_counter()
    env = dict(os.environ)
    if a.malloc_mmap_threshold is not None:  # glibc: allocations above it get their own mapping, returned on free
        env["MALLOC_MMAP_THRESHOLD_"] = str(a.malloc_mmap_threshold)
    if a.in_memory:
        env["BENCH_IN_MEMORY"] = "1"
    r = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{a.command} at {side}x{side} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise SystemExit(f"{a.command} at {side}x{side} exited {res['rc']}:\n{r.stderr[-3000:]}")
    return {"side": side, "pixels": (side * a.scale) ** 2, "wall_seconds": time.perf_counter() - t,
            "load_average": os.getloadavg()[0], **res}


def main() -> None:
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--sides", type=int, nargs="+", default=[256, 512, 1024], help="image sides in pixels")
    p.add_argument("--level", type=float, default=0.1, help="noise level")
    p.add_argument("--scale", type=int, default=1, help="enhance --scale (an integer; pixels are the output's)")
    p.add_argument("--consistency", action="store_true", help="enhance --consistency (ILVR)")
    p.add_argument("--steps", type=int, default=10, help="step budget of a full chain (level 0.1: 1 step)")
    p.add_argument("--model", default="ddpm-mnist5k",
                   help="model (default: the bundled 28x28 digit model); 'tiny': a tiny random fully convolutional "
                        "gray pixel model (boomerang.testing.tiny), windows of --tile-size: the same image-sized "
                        "buffers, far less model time, so larger images run in minutes")
    p.add_argument("--tile-size", type=int, default=None, help="enhance --tile-size (fully convolutional models; default: enhance's own)")
    p.add_argument("--malloc-mmap-threshold", type=int, default=None, metavar="BYTES",
                   help="set glibc's MALLOC_MMAP_THRESHOLD_ for the enhance process (default: None, glibc's own)")
    p.add_argument("--command", default="enhance", choices=("enhance", "sample"), help="the command measured")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3),
                   help="channels of the image (and of the tiny model with --model tiny)")
    p.add_argument("--in-memory", action="store_true",
                   help="keep the run off the bounded path (enhance and sample alike), for comparison")
    p.add_argument("--name", default="enhance_memory", help="file name of the results (NAME.json in --out)")
    add_out_argument(p)
    a = p.parse_args()
    if a.command == "sample" and (a.scale != 1 or a.consistency or a.tile_size):
        p.error("--scale, --consistency and --tile-size are enhance's")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-enhance-mem-") as tmp:
        a.model_dir = a.model
        if a.model == "tiny":
            from boomerang.testing.tiny import make_tiny_pixel_model

            a.model_dir = str(make_tiny_pixel_model(Path(tmp) / "tiny", channels=a.channels, fully_convolutional=True))
        for side in a.sides:
            res = run(side, a, Path(tmp))
            runs.append(res)
            print(f"{side * a.scale:>6} x {side * a.scale:<6} ({res['pixels'] / 1e6:6.2f} MP): peak RSS {res['peak_rss_mb']:8.1f} MB  "
                  f"{res['seconds']:7.1f} s  (load {res['load_average']:.1f})", flush=True)
    summary = {}
    if len(runs) >= 2:
        import numpy as np

        px = np.array([r["pixels"] for r in runs], float)
        mb = np.array([r["peak_rss_mb"] for r in runs], float)
        b, a0 = np.polyfit(px, mb, 1)
        summary = {"base_mb": float(a0), "bytes_per_pixel": float(b * 2**20),
                   "projected_48mp_gb": float((a0 + b * 48e6) / 1024)}
        print(f"peak = {a0:.0f} MB + {b * 2**20:.1f} B/pixel; projected at 48 MP: "
              f"{summary['projected_48mp_gb']:.2f} GB")
    save_json(a.name, {"machine": machine(), "settings": {k: v for k, v in vars(a).items() if k not in ("out", "model_dir")}, "runs": runs,
                       "summary": summary}, a.out)


if __name__ == "__main__":
    main()
