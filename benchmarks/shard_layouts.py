"""The same images as a folder, WebDataset shards and Parquet files through one dataset command: wall time.

    .venv/bin/python benchmarks/shard_layouts.py [--n 4000] [--per-shard 1000] [--repeats 1] [--tmp DIR] [--out DIR]

Writes N small gray PNGs (12x10, random, seeded by key; ``boomerang.testing.shards``) as a
flat folder, as N / per-shard WebDataset tars and as as many Parquet files (row groups of
256), then runs ``boomerang augment IN --level 0 --samples-per-image 1 --batch-size 64
--threads 1`` on each with the bundled pixel model (level 0: the identity, no model call), so
that what is timed is the layouts' bookkeeping: scan, fingerprint, item index, reads (Pillow
on a file, or on bytes read by seek from a shard), atomic writes, journal, and for shards the
staging and the final atomic write of each output shard. The arms run interleaved, each in
this process; wall seconds include the model load (the same for every arm). Writes
shard_layouts.json into --out (default benchmarks/out/).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

from _common import add_out_argument, machine, make_parser, save_json


def main() -> None:
    p = make_parser(__doc__)
    p.add_argument("--n", type=int, default=4000, help="images")
    p.add_argument("--per-shard", type=int, default=1000, help="images per input shard")
    p.add_argument("--repeats", type=int, default=1, help="runs of each arm, interleaved")
    p.add_argument("--tmp", default=None, help="where inputs and outputs go (default: the system's temporary folder)")
    add_out_argument(p)
    args = p.parse_args()

    import numpy as np

    from boomerang.cli import main as cli
    from boomerang.testing.shards import png_bytes, write_parquet, write_webdataset

    root = Path(tempfile.mkdtemp(prefix="shard-layouts-", dir=args.tmp))
    try:
        keys = [f"k{i:06d}" for i in range(args.n)]
        shards = {f"s{j:04d}": keys[j:j + args.per_shard] for j in range(0, args.n, args.per_shard)}
        write_webdataset(root / "webdataset", {f"{s}.tar": k for s, k in shards.items()})
        write_parquet(root / "parquet", {f"{s}.parquet": k for s, k in shards.items()}, row_group_size=256)
        (root / "folder").mkdir()
        for k in keys:
            (root / "folder" / f"{k}.png").write_bytes(png_bytes(np.random.default_rng(zlib.crc32(k.encode()))))
        runs: dict = {arm: [] for arm in ("folder", "webdataset", "parquet")}
        for r in range(args.repeats):
            for arm in runs:
                out = root / f"out-{arm}-{r}"
                t0 = time.perf_counter()
                rc = cli(["augment", str(root / arm), "--out", str(out), "--model", "ddpm-mnist5k", "--level", "0",
                          "--samples-per-image", "1", "--batch-size", "64", "--threads", "1", "--no-progress"])
                wall = time.perf_counter() - t0
                if rc != 0:
                    sys.exit(f"{arm}: exit status {rc}")
                runs[arm].append(wall)
                print(f"{arm}: {args.n} items in {wall:.1f} s ({args.n / wall:.0f} items/s)", flush=True)
                shutil.rmtree(out)
        best = {arm: min(w) for arm, w in runs.items()}
        summary = {arm: {"seconds": runs[arm], "items_per_s_best": args.n / best[arm],
                         "vs_folder": best["folder"] / best[arm]} for arm in runs}
        for arm, s in summary.items():
            print(f"{arm:10s} best {s['items_per_s_best']:.0f} items/s, {s['vs_folder']:.2f}x the folder")
        save_json("shard_layouts", {"n": args.n, "per_shard": args.per_shard, "repeats": args.repeats,
                                    "machine": machine(), "arms": summary}, args.out)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
