"""The golden cases (issue 18, "nothing changes for users, byte for byte"): one list, shared by
``scripts/record_goldens.py`` (which writes ``tests/golden/goldens.json``) and
``tests/golden/test_golden.py`` (which reruns every case and compares). Both load this file by path.

Every case is one real ``boomerang`` command line, run through ``boomerang.cli.main`` with
``--threads 1``, offline. What is hashed from its output folder:

* every ``*.png``: sha256 of the file's bytes (samples, contact sheets, enhanced and anonymised
  images; never ``metadata.json``/``.jsonl``, which hold versions, paths and timings);
* every ``*.safetensors`` (training checkpoints and exported weights): sha256 of its tensors
  (sorted names, dtype, shape, raw bytes) read from the file's own header, so the file's
  ``__metadata__`` and the order of tensors in the file do not count.

Run as a script (``python tests/golden/cases.py RESULT.json [CASE ...]``) it runs the cases
in this fresh process, one after another, and writes ``{case: {"argv": ..., "files": ...}}``
(or ``{"error": ...}`` for a case that failed) to RESULT.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = Path(__file__).resolve().parent / "goldens.json"

#: Versions recorded with the goldens (and printed when a golden differs).
VERSIONED = ("torch", "diffusers", "transformers", "numpy", "pillow", "safetensors",
             "scikit-learn", "mlxtend", "ray")

#: The anonymise job key of the ray case: anonymise draws a secret key with
#: ``secrets.token_hex(32)`` when a job starts (kept in OUT/.job/job.json); the case pins it.
FIXED_JOB_KEY = hashlib.sha256(b"boomerang golden job key").hexdigest()

_SAMPLE = ["sample", "{root}/examples/digits/7.png", "--level", "0.5", "--steps", "10", "--num-samples", "2",
           "--seed", "0", "--threads", "1", "--no-progress", "--out", "{out}"]
_LDM = ["sample", "{root}/examples/digits/7.png", "--model", "ldm-mnist5k-text", "--prompt", "a handwritten seven",
        "--guidance-scale", "3", "--level", "0.5", "--steps", "10", "--num-samples", "2", "--seed", "0",
        "--threads", "1", "--no-progress", "--out", "{out}"]

#: name, argv ({root}: the repository, {in}: the case's input folder, {out}: its output folder),
#: input: the files copied into {in} (destination -> source under the repository), key: pin the
#: anonymise job key.
CASES: list[dict] = [
    *[{"name": f"sample-{s}", "argv": [*_SAMPLE, "--scheduler", s]}
      for s in ("ddpm", "ddim", "euler", "dpmsolver++", "heun")],
    {"name": "ldm-text-exact", "argv": [*_LDM, "--schedule", "exact"]},
    {"name": "ldm-text-img2img", "argv": [*_LDM, "--schedule", "img2img"]},
    {"name": "augment-classes",
     "input": {"low/0.png": "examples/digits/0.png", "low/2.png": "examples/digits/2.png",
               "high/7.png": "examples/digits/7.png", "high/9.png": "examples/digits/9.png"},
     "argv": ["augment", "{in}", "--out", "{out}", "--level", "0.2,0.4", "--samples-per-image", "2",
              "--steps", "10", "--seed", "0", "--threads", "1", "--no-progress"]},
    {"name": "enhance-4x-consistency",
     "input": {"7_7x7.png": "examples/lowres/7_7x7.png", "2.png": "examples/digits/2.png"},
     "argv": ["enhance", "{in}", "--out", "{out}", "--scale", "4", "--consistency", "--steps", "20",
              "--seed", "0", "--threads", "1", "--no-progress"]},
    {"name": "anonymise-ray", "key": True,
     "input": {"2.png": "examples/digits/2.png", "4.png": "examples/digits/4.png",
               "9.png": "examples/digits/9.png"},
     "argv": ["anonymise", "{in}", "--out", "{out}", "--engine", "ray", "--workers", "1", "--level", "0.5",
              "--steps", "10", "--seed", "0", "--threads", "1", "--no-progress"]},
    {"name": "train-20-steps",
     "argv": ["train", "--data", "digits", "--channels", "8,16", "--attention", "0,0", "--norm-groups", "4",
              "--batch-size", "16", "--max-steps", "20", "--warmup-steps", "2", "--seed", "0", "--threads", "1",
              "--no-progress", "--output", "{out}"]},
    {"name": "train-ldm-20-steps",
     "argv": ["train-ldm", "--vae-channels", "16,16,16", "--unet-channels", "32,32", "--unet-layers", "1",
              "--unet-heads", "2", "--text-width", "32", "--text-layers", "1", "--text-heads", "2",
              "--vae-batch-size", "8", "--batch-size", "8", "--warmup-steps", "2", "--max-train-images", "64",
              "--vae-steps", "20", "--max-steps", "20", "--seed", "0", "--threads", "1", "--no-progress",
              "--output", "{out}"]},
    # mnist5k's 4,000 training digits in batches of 200: one epoch is 20 steps
    {"name": "train-classifier-20-steps",
     "argv": ["train-classifier", "--epochs", "1", "--batch-size", "200", "--width", "8", "--seed", "0",
              "--threads", "1", "--quiet", "--output", "{out}"]},
]


def versions() -> dict[str, str | None]:
    """The installed versions of the libraries a golden depends on (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def tensors_sha256(path: Path) -> str:
    """sha256 of a safetensors file's tensors: for each name in sorted order, the name, dtype,
    shape and raw bytes. The header's ``__metadata__`` and the tensors' order in the file do not count."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    h = hashlib.sha256()
    for name in sorted(k for k in header if k != "__metadata__"):
        info = header[name]
        start, end = info["data_offsets"]
        h.update(json.dumps([name, info["dtype"], info["shape"], end - start]).encode() + b"\n")
        h.update(body[start:end])
    return h.hexdigest()


def hash_outputs(out: Path) -> dict[str, str]:
    """{relative path: hash} of every PNG (file bytes) and safetensors file (tensors) under ``out``."""
    files = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        if p.suffix.lower() == ".png":
            files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.suffix.lower() == ".safetensors":
            files[rel] = "tensors:" + tensors_sha256(p)
    return files


@contextlib.contextmanager
def _fixed_job_key():
    """``secrets.token_hex(32)`` called from boomerang returns :data:`FIXED_JOB_KEY` (other callers,
    such as Ray, get random bytes as usual)."""
    import secrets

    real = secrets.token_hex

    def token_hex(nbytes=None):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if nbytes == 32 and caller.split(".")[0] == "boomerang":
            return FIXED_JOB_KEY
        return real(nbytes)

    secrets.token_hex = token_hex
    try:
        yield
    finally:
        secrets.token_hex = real


def run_case(case: dict, work: Path) -> dict[str, str]:
    """Run one case in this process, in the empty folder ``work``; return its hashed outputs.

    Raises:
        RuntimeError: the command's exit status is not 0, or it wrote nothing to hash.
    """
    from boomerang.cli import main

    inp, out = work / "in", work / "out"
    for dest, src in case.get("input", {}).items():
        (inp / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / src, inp / dest)
    argv = [a.format(root=ROOT, out=out, **{"in": inp}) for a in case["argv"]]
    with _fixed_job_key() if case.get("key") else contextlib.nullcontext():
        rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"`boomerang {' '.join(case['argv'])}` exited with status {rc}")
    files = hash_outputs(out)
    if not files:
        raise RuntimeError(f"`boomerang {' '.join(case['argv'])}` wrote no PNG or safetensors file")
    return files


def run_cases(names=None, log=sys.stderr) -> dict[str, dict]:
    """Run the cases (all, or those named) one after another in this process, each in a fresh
    temporary folder; returns ``{name: {"argv": [...], "files": {...}}}`` (``"error"`` instead of
    ``"files"`` for a case that failed)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.pop("RAY_ADDRESS", None)  # the ray case starts its own local Ray, never a cluster's
    chosen = [c for c in CASES if names is None or c["name"] in names]
    unknown = set(names or ()) - {c["name"] for c in CASES}
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
    results = {}
    for case in chosen:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"golden-{case['name']}-") as tmp:
            try:
                results[case["name"]] = {"argv": case["argv"], "files": run_case(case, Path(tmp))}
            except Exception as exc:  # noqa: BLE001 - reported per case; the other cases still run
                results[case["name"]] = {"argv": case["argv"], "error": f"{type(exc).__name__}: {exc}"}
        print(f"golden: {case['name']}: {time.perf_counter() - t0:.1f} s", file=log, flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python tests/golden/cases.py RESULT.json [CASE ...]")
    res = run_cases(sys.argv[2:] or None)
    Path(sys.argv[1]).write_text(json.dumps(res, indent=1, sort_keys=True) + "\n", encoding="utf-8")
