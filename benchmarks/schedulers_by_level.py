"""Each scheduler on the bundled model at a few levels: confidence and class retention. Not a unit test.

Runs ``boomerang.core.boomerang_sample`` with every scheduler that can follow
the exact grid (ddpm, ddim, euler, dpmsolver++) on every 10th test-split digit
(50 digits) at levels 0.4, 0.9, 0.999 and 1.0 (50-step budget, seed 0), and
prints per scheduler and level the share of samples the reference classifier
labels with confidence >= 0.9 and the class retention, or the refusal of
``boomerang.core.check_start_sigma`` (euler and dpmsolver++ at the cosine
schedule's t = 999, sigma ~ 2e4, where they returned noise).

    .venv/bin/python benchmarks/schedulers_by_level.py     # ~1 min on 2 CPU cores

Prints one JSON line per scheduler and level and writes the same lines to
``schedulers_by_level.jsonl`` in ``--out`` (default ``benchmarks/out/``,
git-ignored; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import add_out_argument, make_parser  # noqa: E402


def main(argv=None) -> int:
    p = make_parser(__doc__, first_paragraph=True)
    p.add_argument("--levels", default="0.4,0.9,0.999,1.0", help="comma-separated Boomerang levels")
    p.add_argument("--steps", type=int, default=50, help="step budget of a full chain")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_out_argument(p)
    args = p.parse_args(argv)
    import numpy as np
    import torch

    from boomerang.assets import default_model_path
    from boomerang.classifier import load_classifier
    from boomerang.core import boomerang_sample
    from boomerang.data import load_dataset, load_split
    from boomerang.models import load_model
    from boomerang.seeds import item_generator

    torch.set_num_threads(args.threads)
    model = load_model(None)
    model.batch_invariant = False
    clf = load_classifier(None)
    ds = load_dataset("mnist5k")
    test = np.asarray(load_split(default_model_path() / "split.json")["test"])[::10]
    x0 = torch.from_numpy(ds.images[test]).float() / 127.5 - 1
    labels = ds.labels[test]
    lines = []

    def emit(row: dict) -> None:
        lines.append(json.dumps(row))
        print(lines[-1], flush=True)

    for name in ("ddpm", "ddim", "euler", "dpmsolver++"):
        for level in (float(v) for v in args.levels.split(",")):
            gens = [item_generator(0, int(i), 0) for i in test]
            try:
                with torch.no_grad():
                    s = boomerang_sample(model, x0, generators=gens, level=level, scheduler=name,
                                         steps=args.steps).samples
            except ValueError as exc:  # boomerang.core.check_start_sigma
                emit({"scheduler": name, "level": level, "refused": str(exc)})
                continue
            with torch.no_grad():
                prob = clf(s).softmax(1)
            emit({"scheduler": name, "level": level, "n": len(test),
                  "confident_share": round(float((prob.max(1).values >= 0.9).float().mean()), 3),
                  "retention": round(float((prob.argmax(1).numpy() == labels).mean()), 3)})
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "schedulers_by_level.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
