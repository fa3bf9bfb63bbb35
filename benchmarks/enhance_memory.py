"""Peak memory of ``enhance --scale 1`` against the image's size, and its projection to 48 MP.

    .venv/bin/python benchmarks/enhance_memory.py [--sides 256 512 1024] [--level 0.1] [--steps 10]
        [--model ddpm-mnist5k | tiny] [--tile-size S] [--scale 1] [--consistency] [--name NAME] [--out DIR]

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
import json, sys, time
t = time.perf_counter()
from boomerang.cli import main
rc = main(sys.argv[1:])
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t, "peak_rss_mb": peak / 1024}))
"""


def make_image(path: Path, side: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(side)
    ramp = np.add.outer(np.arange(side), np.arange(side)) / (2 * side) * 200
    img = np.clip(ramp + rng.normal(0, 12, (side, side)), 0, 255).astype(np.uint8)
    Image.fromarray(img, "L").save(path)


def run(side: int, a, tmp: Path) -> dict:
    src = tmp / f"in{side}.png"
    make_image(src, side)
    out = tmp / f"out{side}"
    argv = ["enhance", str(src), "--out", str(out), "--scale", str(a.scale), "--level", str(a.level),
            "--steps", str(a.steps), "--model", a.model_dir, "--threads", "1", "--seed", "0"]
    if a.consistency:
        argv += ["--consistency"]
    if a.tile_size:
        argv += ["--tile-size", str(a.tile_size)]
    t = time.perf_counter()
    env = dict(os.environ)
    if a.malloc_mmap_threshold is not None:  # glibc: allocations above it get their own mapping, returned on free
        env["MALLOC_MMAP_THRESHOLD_"] = str(a.malloc_mmap_threshold)
    r = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"enhance at {side}x{side} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise SystemExit(f"enhance at {side}x{side} exited {res['rc']}:\n{r.stderr[-3000:]}")
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
    p.add_argument("--name", default="enhance_memory", help="file name of the results (NAME.json in --out)")
    add_out_argument(p)
    a = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-enhance-mem-") as tmp:
        a.model_dir = a.model
        if a.model == "tiny":
            from boomerang.testing.tiny import make_tiny_pixel_model

            a.model_dir = str(make_tiny_pixel_model(Path(tmp) / "tiny", fully_convolutional=True))
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
