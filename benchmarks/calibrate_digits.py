"""Time ``boomerang calibrate-privacy`` on real digits with the bundled model, through the real CLI.

IN_DIR is the mnist5k training split (the 4000 digits the bundled model was
trained on) written as class folders; ``--sources`` of them (default 200) are
released at each probe and attacked with all 4000 as candidates. The command's
own output (table, recommended level, anonymise command) is printed as it
comes, then the wall time; the result (the command's calibration.json, the
command line, wall and CPU seconds, the load average and the machine) is saved
as ``<out>/calibrate_digits[_<features>].json`` and the command's plot as
``<plots>/calibrate_digits[_<features>].png``.

With ``--text-model ldm-mnist5k-text`` the release is the privacy-utility
study's text arm instead: IN_DIR is an ``imagefolder`` of the same 4000 digits,
zero-padded to the model's 32x32 (``boomerang.studies.privacy_utility.
write_captioned_sources``), whose ``caption`` column holds each digit's class
caption ("a handwritten seven"), and the command gets ``--model TEXT_MODEL
--prompt-template "{caption}" --guidance-scale 3``; the result is saved as
``calibrate_digits_text[_<features>]``.

Run (as quoted in docs/privacy.md):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibrate_digits.py --out benchmarks/results --plots docs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibrate_digits.py --text-model ldm-mnist5k-text \
        --out benchmarks/results --plots docs
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import shlex
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
    ap.add_argument("--text-model", default=None,
                    help="release with this text-conditioned model, each digit's class caption as its prompt "
                         "(the study's text arm; default: the bundled unconditional model)")
    ap.add_argument("--prompt-template", default="{caption}", help="with --text-model: anonymise's --prompt-template")
    ap.add_argument("--guidance-scale", default="3", help="with --text-model: the guidance scale (the study's)")
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
        model_flags = []
        if args.text_model:  # the study's text arm: 32x32 digits with class captions, an imagefolder
            from boomerang.studies.privacy_utility import write_captioned_sources

            write_captioned_sources(root, ds.images[train], ds.labels[train], train)
            model_flags = ["--model", args.text_model, "--prompt-template", args.prompt_template,
                           "--guidance-scale", args.guidance_scale, "--layout", "imagefolder"]
        else:
            for i in train:
                p = root / str(int(ds.labels[i])) / f"mnist_{int(i):04d}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(ds.images[i, 0]).save(p)
        out = pathlib.Path(tmp) / "cal"
        cmd = [boomerang_exe(), "calibrate-privacy", str(root), "--target-top1", args.target_top1, "--sources",
               str(args.sources), "--features", args.features, "--class-retention", "bundled", "--threads",
               args.threads, "--no-progress", "--out", str(out), *model_flags, *args.sampling.split()]
        shown = shlex.join(["boomerang", *cmd[1:]]).replace(str(root), "MNIST5K_TRAIN").replace(str(out), "OUT")
        print(f"$ {shown}", flush=True)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        wall = time.perf_counter() - t0
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        if rc not in (0, 4):
            return rc
        result = json.loads((out / "calibration.json").read_text())
        name = ("calibrate_digits" + ("_text" if args.text_model else "")
                + ("" if args.features == "pixels" else f"_{args.features}"))
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
