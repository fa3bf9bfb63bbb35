"""Items 1-3 of the benchmark suite on a CUDA GPU, in float16 and bfloat16.

Runs overhead.py (overhead over the bare loop, batch 16), vs_diffusers.py
(throughput against StableDiffusionImg2ImgPipeline) and batching.py (images/s
at batch 1/4/16/64 and the automatic batch size) on ``--device`` (default
cuda) for each dtype, and records the GPU's name with every figure. Without a
CUDA GPU it prints why and exits with status 2, writing nothing.

    .venv/bin/python benchmarks/gpu.py [--device cuda] [--dtypes float16,bfloat16] [--model DIR] [--out DIR]

Writes gpu.json (every item and dtype in one file)
into --out (default benchmarks/out/; ``--out benchmarks/results`` refreshes the committed copy).
"""

from __future__ import annotations

import sys

from _common import add_out_argument, machine, make_parser, save_json


def main(argv=None):
    ap = make_parser(__doc__)
    ap.add_argument("--device", default="cuda", help="CUDA device: cuda or cuda:N")
    ap.add_argument("--dtypes", default="float16,bfloat16", help="comma-separated precisions to measure")
    ap.add_argument("--model", default=None, metavar="DIR",
                    help="pixel model folder (default: the bundled model, else a stand-in with its architecture)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats per measurement (the median is reported)")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU is available (torch.cuda.is_available() is False; this torch is "
              f"{torch.__version__}); nothing was measured. Run it on a machine with a CUDA GPU and a CUDA build "
              "of torch.", file=sys.stderr)
        return 2
    import batching
    import overhead
    import vs_diffusers

    name = torch.cuda.get_device_name(args.device)
    out = {"machine": machine(), "gpu": name, "device": args.device, "results": {}}
    print(f"GPU: {name}")
    for dtype in args.dtypes.split(","):
        print(f"\n=== {dtype} ===")
        r = {"overhead": overhead.run_all(model=args.model, device=args.device, dtype=dtype, repeat=args.repeat,
                                          sd_repeat=args.repeat),
             "vs_diffusers": vs_diffusers.run_all(device=args.device, dtype=dtype, repeat=args.repeat),
             "batching": batching.run_all(model=args.model, device=args.device, dtype=dtype, repeat=args.repeat)}
        out["results"][dtype] = r
    save_json("gpu", out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
