"""Peak resident memory of ``boomerang sample``, and its growth with the number of inputs.

Each run is a fresh ``boomerang sample`` process (the installed CLI, bundled
model or its architecture via --model, --threads 1); its peak RSS is read with
``getrusage(RUSAGE_CHILDREN)`` in a fresh wrapper process.

1. one 28x28 digit x 16 samples (level 0.3, default steps);
2. 1, 16 and 50 input images of 512x512 RGB (random pixels, so each decoded
   input is big: 3 MB as float32 RGB, 1 MB as the model's one channel), 1
   sample each, 10-step budget, automatic batch (16). The CLI decodes the
   inputs of one batch at a time, so memory may grow up to one batch of inputs
   (1 -> 16) but not beyond (16 -> 50); holding every input would add ~4 MB each.

    .venv/bin/python benchmarks/memory.py [--model DIR] [--out DIR]

Writes memory.json into --out (default benchmarks/out/; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, add_out_argument, boomerang_exe, bundled_or_standin, machine, make_parser, save_json

WRAP = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
print(json.dumps({"rc": p.returncode, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "stderr_tail": p.stderr[-300:]}))
"""


def peak(cmd) -> dict:
    out = subprocess.run([sys.executable, "-c", WRAP, *cmd], check=True, capture_output=True, text=True, cwd=ROOT)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res['stderr_tail']}")
    return res


def main(argv=None):
    ap = make_parser(__doc__)
    ap.add_argument("--model", default=None, metavar="DIR",
                    help="pixel model folder (default: the bundled model, else a stand-in with its architecture)")
    ap.add_argument("--many", type=int, default=50, help="input images of the largest run (more than 16)")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    import numpy as np
    from PIL import Image

    folder, desc = bundled_or_standin(args.model)
    exe = boomerang_exe()
    base = [exe, "sample", "--model", folder, "--threads", "1", "--no-progress"]
    res = {"machine": machine(), "model": desc}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        digit = tmp / "digit.png"
        Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(digit)
        r = peak(base + [str(digit), "--num-samples", "16", "--out", str(tmp / "out1")])
        res["one_image_16_samples"] = r
        print(f"1 image x 16 samples (level 0.3, 50-step budget): peak RSS {r['peak_rss_mb']:.0f} MB, {r['seconds']:.1f} s")
        for n in (1, 16, args.many):
            d = tmp / f"in{n}"
            d.mkdir()
            for i in range(n):
                Image.fromarray((rng.random((512, 512, 3)) * 255).astype(np.uint8)).save(d / f"img{i:03d}.png")
            r = peak(base + [str(d), "--num-samples", "1", "--steps", "10", "--out", str(tmp / f"out_many{n}")])
            res[f"inputs_{n}"] = r
            print(f"{n:3d} input(s) of 512x512 RGB x 1 sample: peak RSS {r['peak_rss_mb']:.0f} MB, {r['seconds']:.1f} s")
    one_batch = res["inputs_16"]["peak_rss_mb"] - res["inputs_1"]["peak_rss_mb"]
    grow = res[f"inputs_{args.many}"]["peak_rss_mb"] - res["inputs_16"]["peak_rss_mb"]
    res["growth_1_to_16_mb"] = one_batch
    res["growth_16_to_many_mb"] = grow
    res["growth_per_input_beyond_one_batch_mb"] = grow / (args.many - 16)
    print(f"growth 1 -> 16 inputs (one batch of inputs decoded at a time): {one_batch:+.0f} MB")
    print(f"growth 16 -> {args.many} inputs: {grow:+.0f} MB ({grow / (args.many - 16):+.2f} MB per extra input; "
          "holding every input would cost ~4 MB each)")
    save_json("memory", res, args.out)


if __name__ == "__main__":
    main()
