"""Start-up: ``boomerang --help`` (target < 1 s, no torch import) and model loading.

Each figure is the median of fresh subprocesses:

* ``boomerang --help`` and ``boomerang sample --help`` wall time (the installed
  console script), and whether torch (or diffusers) ends up in ``sys.modules``
  when the CLI's ``main(['--help'])`` runs;
* import of torch + diffusers + boomerang.models, then ``load_model`` of the
  bundled model (else its architecture with random weights, same file size)
  twice: the first call also pays diffusers' lazy imports of its model classes.

    .venv/bin/python benchmarks/startup.py [--model DIR] [--repeat 5] [--out DIR]

Writes startup.json into --out (default benchmarks/out/; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from _common import ROOT, add_out_argument, boomerang_exe, bundled_or_standin, machine, make_parser, median, save_json

PROBE = """
import sys, contextlib, io
from boomerang.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    rc = main({argv!r})
print({{"rc": rc, "torch": "torch" in sys.modules, "diffusers": "diffusers" in sys.modules,
        "numpy": "numpy" in sys.modules}})
"""

LOAD = """
import json, time
t0 = time.perf_counter()
import torch, diffusers
from boomerang.models import load_model
t1 = time.perf_counter()
m = load_model({folder!r})
t2 = time.perf_counter()
m = load_model({folder!r})
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "second_load_s": t3 - t2}}))
"""


def _wall(cmd, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        ts.append(time.perf_counter() - t0)
    return median(ts), ts


def main(argv=None):
    ap = make_parser(__doc__)
    ap.add_argument("--model", default=None, metavar="DIR",
                    help="pixel model folder (default: the bundled model, else a stand-in with its architecture)")
    ap.add_argument("--repeat", type=int, default=5, help="fresh subprocesses per figure (the median is reported)")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    exe = boomerang_exe()
    res = {"machine": machine(), "repeat": args.repeat}
    for name, cmd in (("help", [exe, "--help"]), ("sample_help", [exe, "sample", "--help"])):
        med, ts = _wall(cmd, args.repeat)
        res[f"{name}_s"] = med
        res[f"{name}_runs_s"] = ts
        print(f"{' '.join(['boomerang'] + cmd[1:]):26s} {med:6.3f} s (median of {args.repeat})")
    for name, argv_ in (("help_modules", ["--help"]), ("sample_help_modules", ["sample", "--help"])):
        out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv_)], check=True, capture_output=True,
                             text=True, cwd=ROOT).stdout.strip().splitlines()[-1]
        mods = eval(out, {})  # noqa: S307 -- our own probe's dict literal
        res[name] = mods
        print(f"main({argv_}) imports torch: {mods['torch']}, diffusers: {mods['diffusers']}")
    folder, desc = bundled_or_standin(args.model)
    loads = []
    for _ in range(max(3, args.repeat // 2)):
        out = subprocess.run([sys.executable, "-c", LOAD.format(folder=folder)], check=True, capture_output=True,
                             text=True, cwd=ROOT).stdout.strip().splitlines()[-1]
        loads.append(json.loads(out))
    res["model"] = desc
    res["import_torch_diffusers_s"] = median([r["import_s"] for r in loads])
    res["load_model_s"] = median([r["load_s"] for r in loads])
    res["second_load_model_s"] = median([r["second_load_s"] for r in loads])
    print(f"import torch + diffusers + boomerang.models: {res['import_torch_diffusers_s']:.3f} s; "
          f"first load_model ({desc}; includes diffusers' lazy imports of its model classes): "
          f"{res['load_model_s']:.3f} s; second load_model in the same process: {res['second_load_model_s']:.3f} s "
          f"(medians of {len(loads)})")
    res["met"] = res["help_s"] < 1.0 and not res["help_modules"]["torch"] and not res["sample_help_modules"]["torch"]
    print(f"target: --help < 1 s without torch: {'met' if res['met'] else 'NOT met'}")
    save_json("startup", res, args.out)


if __name__ == "__main__":
    main()
