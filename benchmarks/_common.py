"""Shared helpers of the benchmark scripts (not part of the library).

* :func:`bundled_or_standin` -- the bundled model folder if it exists, else an
  identically configured ``UNet2DModel`` (``boomerang.training.ddpm`` defaults: 1x28x28,
  block_out_channels (32, 64, 64), attention at the 14x14 level and in the
  middle block) with random weights: the same cost per call as the real one.
* :func:`make_small_sd` -- a Stable-Diffusion-shaped folder with random weights,
  bigger than the tests' :func:`boomerang.testing.tiny.make_tiny_sd` so that
  ratios mean something: 256x256 RGB images, VAE factor 8 (32x32x4 latents),
  a cross-attention UNet and a 77-token CLIP text encoder.
* :func:`add_out_argument`, :func:`save_json`, :func:`plot_path`: where results go.
  Every script that writes results takes ``--out DIR`` (its JSON, under the
  script's usual file name) and, if it draws figures or screenshots,
  ``--plots DIR`` (default: the ``--out`` folder). The default ``--out`` is
  ``benchmarks/out/``, which git ignores, so running a benchmark never rewrites
  a tracked file. Refreshing the committed copies is explicit:
  ``--out benchmarks/results`` (JSON) and ``--plots docs`` (the figures the
  README and docs/ show). Relative paths are relative to the current folder.
* :func:`make_parser`: every script's argument parser: each option has a help
  text and ``--help`` shows its default (``(default: X)``).
* :func:`median`, :func:`timeit`, :func:`machine`, :func:`boomerang_exe`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"  # the committed results: written only with --out benchmarks/results
OUT = ROOT / "benchmarks" / "out"  # default --out (git-ignored)
CACHE = ROOT / "benchmarks" / ".cache"  # generated stand-in models (git-ignored)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def machine() -> dict:
    """CPU model, core count, torch version and threads: the context of every figure."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "loadavg_at_start": load,
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` of the benchmark scripts: each option's text ends with ``(default: X)``,
    unless the text already says its default in words (``(default: the bundled model)``),
    the option is a switch (``store_true``), or it has no default value to show (then its
    text must say what happens without it). An empty string is shown as ``empty``."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.nargs == 0 or action.default in (None, argparse.SUPPRESS) \
                or not action.option_strings:
            return text
        return text + (" (default: empty)" if action.default == "" else " (default: %(default)s)")


def make_parser(doc: str, *, first_paragraph: bool = False) -> argparse.ArgumentParser:
    """The argument parser of a benchmark script: its description is the first line
    (``first_paragraph``: the first paragraph) of the script's docstring ``doc``, and
    ``--help`` shows every option's default (:class:`HelpFormatter`). Parsing imports no
    torch: scripts import it after ``parse_args``, so ``--help`` answers at once."""
    description = doc.split("\n\n")[0] if first_paragraph else doc.split("\n")[0]
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def add_out_argument(parser, *, plots: bool = False, name: str | None = None) -> None:
    """Add ``--out DIR`` (and with ``plots``, ``--plots DIR``) to ``parser``: the one
    rule every benchmark script that writes files follows (see the module docstring).

    After parsing, ``args.out`` is a :class:`pathlib.Path` (default ``benchmarks/out/``)
    and ``args.plots`` is the figures' folder (default: ``args.out``); pass them to
    :func:`save_json` and :func:`plot_path`, which create the folder when they write.
    With ``name`` (the script's results name), ``--name NAME`` lets a variant run
    write ``NAME.json`` (and ``NAME.png``) beside the main run's files.
    """
    parser.add_argument("--out", metavar="DIR", type=pathlib.Path, default=OUT,
                        help="folder for the results JSON (default: benchmarks/out/, git-ignored; "
                             "--out benchmarks/results refreshes the committed results)")
    if plots:
        parser.add_argument("--plots", metavar="DIR", type=pathlib.Path, default=None,
                            help="folder for the figures (default: the --out folder; "
                                 "--plots docs refreshes the figures the docs show)")
    if name:
        parser.add_argument("--name", default=name,
                            help="results name: writes NAME.json (and NAME.png)")


def _shown(path: pathlib.Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def save_json(name: str, data: dict, out: pathlib.Path | str) -> pathlib.Path:
    """Write ``data`` to ``<out>/<name>.json`` (``out`` is the script's ``--out``); returns the path."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {_shown(path)}")
    return path


def plot_path(args, filename: str) -> pathlib.Path:
    """Where a figure called ``filename`` goes: ``--plots`` if given, else ``--out``
    (created if missing)."""
    folder = pathlib.Path(getattr(args, "plots", None) or args.out)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / filename


def boomerang_exe() -> str:
    """The ``boomerang`` console script of the Python running this script (so that
    ``.venv/bin/python benchmarks/X.py`` measures that venv's CLI without activating
    it), else the one on PATH."""
    from boomerang.testing import console_script

    try:
        return console_script()
    except FileNotFoundError:
        raise SystemExit("benchmarks: no `boomerang` command next to this Python or on PATH; "
                         "install the package first (.venv/bin/pip install -e \".[bench]\")") from None


def median(xs):
    return statistics.median(xs)


def timeit(fn, repeat: int = 3):
    """Median wall time of ``fn()`` over ``repeat`` calls (seconds)."""
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return median(ts)


def bundled_or_standin(model: str | None = None) -> tuple[str, str]:
    """(folder, description): ``model`` if given; else the bundled model if present;
    else a random-weight stand-in of the same architecture (written once to .cache)."""
    if model:
        return str(model), f"--model {model}"
    from boomerang import assets

    try:
        path = assets.default_model_path()
        if (path / "model_index.json").is_file() or (path / "config.json").is_file():
            return str(path), "bundled ddpm-mnist5k"
    except FileNotFoundError:
        pass
    out = CACHE / "standin-ddpm-mnist5k"
    if not (out / "model_index.json").is_file():
        import torch
        from diffusers import DDPMPipeline

        from boomerang.training.ddpm import TrainConfig, build_scheduler, build_unet

        torch.manual_seed(0)
        cfg = TrainConfig()
        unet = build_unet(cfg, 28, 1)
        DDPMPipeline(unet=unet, scheduler=build_scheduler(cfg)).save_pretrained(out, safe_serialization=True)
    return str(out), "random-weight stand-in with the bundled model's architecture (bundled model not present)"


def make_small_sd(path: pathlib.Path | None = None) -> str:
    """A small SD-1.x-shaped folder (random weights); returns its path. 256x256 -> 32x32x4 latents."""
    path = pathlib.Path(path or CACHE / "small-sd")
    if (path / "model_index.json").is_file():
        return str(path)
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from boomerang.testing.tiny import SD_SCHEDULER, write_tokenizer_files

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64, attention_head_dim=8, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32, 64, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4, norm_num_groups=8, sample_size=256,
    )
    vocab_file, merges_file = write_tokenizer_files(path.parent / (path.name + "_tokenizer_src"))
    tokenizer = CLIPTokenizer(vocab=str(vocab_file), merges=str(merges_file), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=77, projection_dim=64,
    ))
    StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler.from_config(SD_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(path, safe_serialization=True)
    return str(path)


def bench_parser(doc: str, *, repeat: int, model: bool = True):
    """The flags every timing benchmark shares: --model (default: the bundled
    model or its stand-in), --device, --dtype, --threads (default 1),
    --repeat and --out (:func:`add_out_argument`). Scripts add their own flags
    to the returned parser."""
    ap = make_parser(doc)
    if model:
        ap.add_argument("--model", default=None, metavar="DIR",
                        help="pixel model folder (default: the bundled model, else a random-weight stand-in "
                             "with its architecture)")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="float32", help="precision of the networks: float32, float16 or bfloat16")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=repeat, help="timed repeats per measurement (the median is reported)")
    add_out_argument(ap)
    return ap


def small_png(path) -> None:
    """Re-save a figure as a 256-colour palette PNG (small files for docs/)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
