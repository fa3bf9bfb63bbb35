"""Time ``boomerang calibrate-privacy`` on real digits with the bundled model, through the real CLI.

IN_DIR is the mnist5k training split (the 4000 digits the bundled model was
trained on) written as class folders; ``--sources`` of them (default 200) are
released at each probe and attacked with all 4000 as candidates. The command's
own output (table, recommended level, anonymise command) is printed as it
comes, then the wall time; the result (the command's calibration.json, the
command line, wall and CPU seconds, the load average and the machine) is saved
as ``<out>/calibrate_digits[_<features>].json`` and the command's plot as
``<plots>/calibrate_digits[_<features>].png``.

Run (as quoted in docs/privacy.md):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibrate_digits.py --out benchmarks/results --plots docs
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import add_out_argument, boomerang_exe, machine, make_parser, plot_path, save_json  # noqa: E402


def main(argv=None) -> int:
    ap = make_parser(__doc__)
    ap.add_argument("--sources", type=int, default=200, help="sources released at each probe")
    ap.add_argument("--target-top1", default="0.05", help="target top-1 share")
    ap.add_argument("--features", default="pixels", help="the attack's feature space")
    ap.add_argument("--sampling", default="--scheduler ddim --eta 0 --steps 10",
                    help="sampling flags of the command (the privacy-utility study's sampler)")
    ap.add_argument("--threads", default="1", help="--threads of the command")
    add_out_argument(ap, plots=True)
    args = ap.parse_args(argv)

    import numpy as np
    from PIL import Image

    from boomerang.assets import default_model_path
    from boomerang.data import load_dataset, load_split

    ds = load_dataset("mnist5k")
    train = np.asarray(load_split(default_model_path() / "split.json")["train"])
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp) / "mnist5k-train"
        for i in train:
            p = root / str(int(ds.labels[i])) / f"mnist_{int(i):04d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ds.images[i, 0]).save(p)
        out = pathlib.Path(tmp) / "cal"
        cmd = [boomerang_exe(), "calibrate-privacy", str(root), "--target-top1", args.target_top1, "--sources",
               str(args.sources), "--features", args.features, "--class-retention", "bundled", "--threads",
               args.threads, "--no-progress", "--out", str(out), *args.sampling.split()]
        shown = " ".join(["boomerang", *cmd[1:]]).replace(str(root), "MNIST5K_TRAIN").replace(str(out), "OUT")
        print(f"$ {shown}", flush=True)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        wall = time.perf_counter() - t0
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        if rc not in (0, 4):
            return rc
        result = json.loads((out / "calibration.json").read_text())
        name = "calibrate_digits" + ("" if args.features == "pixels" else f"_{args.features}")
        figure = plot_path(args, f"{name}.png")
        figure.write_bytes((out / "calibration.png").read_bytes())
        print(f"wrote {figure}")
    result.pop("sources", None)
    result.pop("in_dir", None)
    result["anonymise_command"] = result.get("anonymise_command", "").replace(str(root), "MNIST5K_TRAIN")
    record = {"command": shown, "wall_s": round(wall, 1), "cpu_s": round(cpu.ru_utime + cpu.ru_stime, 1),
              "loadavg_before": [round(v, 2) for v in load0], "loadavg_after": [round(v, 2) for v in os.getloadavg()],
              "machine": machine(), "calibration": result}
    print(f"calibrate-privacy on {args.sources} digits ({len(train)} candidates): {wall:.0f} s wall, "
          f"{record['cpu_s']:.0f} s CPU, load average {load0[0]:.1f} before")
    save_json(name, record, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
