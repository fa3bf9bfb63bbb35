"""The privacy-utility study (``benchmarks/privacy_utility.py``, issue 9): its text arm and its settings.

The text-conditioned arm releases the same sources are released through the command users run::

    boomerang anonymise SRC --model ldm-mnist5k-text --prompt-template "{caption}" --level 0.1,...,1.0 \\
        --guidance-scale G --scheduler ddim --eta 0 --steps S --link-file LINKS --out OUT

* :func:`write_captioned_sources`: SRC is a Hugging Face ``imagefolder``: one
  PNG per source digit, named after its mnist5k index, zero-padded from 28x28
  to 32x32 (the layout ``ldm-mnist5k-text`` was trained on:
  :func:`boomerang.training.ldm_parts.digits_to_rgb32`), and ``metadata.jsonl`` with
  ``file_name``, ``label`` and ``caption`` = the class caption
  (:func:`boomerang.training.ldm_parts.class_prompt`: ``"a handwritten seven"``, one of
  the phrasings the model was trained on).
* :func:`anonymise_command` builds the command line; :func:`run_anonymise` runs it.
* :func:`read_release` follows the link file back to the sources and turns
  each 32x32 RGB output into the 28x28 gray digit that the attacks, the
  reference classifier and the utility CNN see (channel mean and centre crop,
  as :func:`boomerang.training.ldm_parts.rgb32_to_digits`, then 8 bits again).
* :func:`release`: all of that for one set of sources, in a temporary folder.

The settings: :func:`base_settings` are what makes two runs' rows comparable, and
:func:`reuse_unconditional` takes an earlier run's unconditional arm only when they
match; :func:`text_model_setting` reads ``--text-model`` (``none``: no text arm).
The tables README.md and docs/privacy.md show are printed by the benchmark
(``benchmarks/_privacy_tables.py``).

Every output is seeded by the job's secret key (drawn when ``anonymise``
starts, as for any user), so a rerun draws new samples; the unconditional arm
uses fixed seeds.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import time

#: The default prompt template given to ``--prompt-template``: the caption column as it is.
PROMPT_TEMPLATE = "{caption}"
PAD = 2  # 28x28 digits sit in the middle of the model's 32x32 images


def write_captioned_sources(folder: pathlib.Path, images, labels, indices) -> list[str]:
    """Write the sources as an ``imagefolder`` with class captions.

    Args:
        folder: a new or empty folder.
        images: uint8 array ``[N, 1, 28, 28]`` (0..255), white digits on black.
        labels: int array ``[N]`` (0..9).
        indices: int array ``[N]``: each digit's mnist5k index (its file name, ``05123.png``).

    Returns:
        the file names, in input order.

    Raises:
        ValueError: shapes that do not match, or a non-empty ``folder``.
    """
    import numpy as np
    from PIL import Image

    from boomerang.training.ldm_parts import class_prompt

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 1 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, 1, H, W], got {images.dtype} {images.shape}")
    if not len(images) == len(labels) == len(indices):
        raise ValueError(f"images, labels and indices differ in length: {len(images)}, {len(labels)}, {len(indices)}")
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty")
    names, rows = [], []
    for img, label, idx in zip(images, labels, indices):
        name = f"{int(idx):05d}.png"
        Image.fromarray(np.pad(img[0], PAD)).save(folder / name)
        names.append(name)
        rows.append({"file_name": name, "label": int(label), "caption": class_prompt(int(label))})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return names


def anonymise_command(exe: str, src, out, link_file, levels, *, model: str, guidance_scale: float,
                      scheduler: str, steps: int, threads: int, batch_size: int | None = None,
                      prompt_template: str = PROMPT_TEMPLATE) -> list[str]:
    """The ``boomerang anonymise`` command line of the arm (one job, every level).
    ``prompt_template`` "" gives no ``--prompt-template``: every item gets the empty prompt, the
    model's unconditional branch (the control that shows what the caption does)."""
    cmd = [exe, "anonymise", str(src), "--out", str(out), "--level", ",".join(f"{v:g}" for v in levels),
           "--model", model]
    if prompt_template:
        cmd += ["--prompt-template", prompt_template]
    cmd += ["--guidance-scale", f"{guidance_scale:g}", "--scheduler", scheduler, "--steps", str(steps),
            "--link-file", str(link_file), "--threads", str(threads), "--no-progress"]
    if scheduler == "ddim":
        cmd[cmd.index("--steps"):cmd.index("--steps")] = ["--eta", "0"]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    return cmd


def run_anonymise(cmd: list[str], log_file=None) -> float:
    """Run the command (offline, its output into ``log_file`` or inherited); wall seconds.
    Raises RuntimeError naming the exit status if it fails."""
    t0 = time.monotonic()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log_file, "w") if log_file else open(os.devnull, "w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh if log_file else None, stderr=fh if log_file else None).returncode
    if rc != 0:
        raise RuntimeError(f"boomerang anonymise exited with status {rc}" + (f" (log: {log_file})" if log_file else ""))
    return time.monotonic() - t0


def output_to_digit(path):
    """One released PNG (gray or RGB, 32x32) -> float tensor ``[1, 28, 28]`` in [-1, 1] on the 8-bit grid:
    channel mean, centre crop of 28 (the inverse of the padding), rounded to 8 bits."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2)
    h, w = a.shape
    top, left = (h - 28) // 2, (w - 28) // 2
    a = np.rint(a[top:top + 28, left:left + 28])
    return torch.from_numpy(a).float().unsqueeze(0) / 127.5 - 1.0


def read_release(out, link_file, names: list[str], levels) -> dict[float, "torch.Tensor"]:  # noqa: F821
    """The released digits per level, in the sources' order: ``{level: [N, 1, 28, 28] in [-1, 1]}``.

    Raises:
        ValueError: a source without exactly one output at a level (the job did not finish).
    """
    import torch

    from boomerang.privacy.links import read_links

    single = len(levels) == 1
    found: dict[tuple[str, float], pathlib.Path] = {}
    for ln in read_links(link_file):
        level = float(levels[0]) if single else float(ln.extra["level"])
        key = (ln.source, round(level, 6))
        if key in found:
            raise ValueError(f"{ln.source} has two outputs at level {level:g}")
        found[key] = pathlib.Path(out) / ln.output
    result = {}
    for level in levels:
        missing = [n for n in names if (n, round(float(level), 6)) not in found]
        if missing:
            raise ValueError(f"no output at level {level:g} for {len(missing)} sources (first: {missing[0]})")
        result[float(level)] = torch.stack([output_to_digit(found[(n, round(float(level), 6))]) for n in names])
    return result


def signal_kept(model_folder, levels) -> list[float]:
    """sqrt(alpha_bar_t) at each level's timestep (:func:`boomerang.levels.level_to_timestep`; level 0: 1.0)
    from a model folder's ``scheduler/scheduler_config.json``: how much of x0 survives the forward jump
    (the two models' noise schedules differ, so the same level is not the same noise)."""
    import torch
    from diffusers import DDPMScheduler

    from boomerang.levels import level_to_timestep

    cfg = json.loads((pathlib.Path(model_folder) / "scheduler" / "scheduler_config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    sched = DDPMScheduler(**{k: cfg[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")
                             if k in cfg})
    ab = sched.alphas_cumprod
    ts = [level_to_timestep(float(v), len(ab)) for v in levels]
    return [1.0 if t is None else float(torch.sqrt(ab[t])) for t in ts]


def release(args, data: dict, levels, *, exe: str) -> tuple[list[dict], dict, dict]:
    """Release ``data["sources"]`` at ``levels`` with ``boomerang anonymise`` in a temporary folder.

    Args:
        args: the benchmark's flags (``text_model``, ``prompt_template``, ``guidance_scale``, ``scheduler``, ``steps``,
            ``threads``, ``batch_size``, ``quick``).
        data: ``ds`` (the mnist5k dataset) and ``sources`` (its indices to release).
        levels: the levels, one anonymise job for all.
        exe: the ``boomerang`` command to run (e.g. :func:`boomerang.testing.console_script`).

    Returns:
        ``(conditions, released, info)``: one condition per level (``condition`` "boomerang_text",
        ``level``, ``key``, ``signal_kept``), ``released[key]`` = ``[N, 1, 28, 28]`` in [-1, 1] in the
        sources' order, and ``info`` (``settings``, ``anonymise_command``, ``anonymise_s``).
    """
    import tempfile

    from boomerang.assets import default_model_path, named_model_path

    ds, sources = data["ds"], data["sources"]
    with tempfile.TemporaryDirectory(prefix="privacy_text_") as tmp:
        tmp = pathlib.Path(tmp)
        names = write_captioned_sources(tmp / "src", ds.images[sources], ds.labels[sources], sources)
        cmd = anonymise_command(exe, tmp / "src", tmp / "out", tmp / "links.jsonl", levels,
                                model=args.text_model, guidance_scale=args.guidance_scale,
                                scheduler=args.scheduler, steps=args.steps, threads=args.threads,
                                batch_size=args.batch_size, prompt_template=args.prompt_template)
        shown = shlex.join(["boomerang"] + [str(c).replace(str(tmp), "TMP") for c in cmd[1:]])
        print(f"[{time.strftime('%H:%M:%S')}] text arm: {shown}", flush=True)
        try:
            anonymise_s = run_anonymise(cmd, tmp / "anonymise.log")
        except RuntimeError:
            print((tmp / "anonymise.log").read_text(), flush=True)
            raise
        print(f"[{time.strftime('%H:%M:%S')}] text arm: anonymise took {anonymise_s:.0f} s", flush=True)
        by_level = read_release(tmp / "out", tmp / "links.jsonl", names, levels)
        job = json.loads((tmp / "out" / ".job" / "job.json").read_text())
    kept = signal_kept(named_model_path(args.text_model) or pathlib.Path(args.text_model), levels)
    kept_unconditional = signal_kept(default_model_path(), levels)
    released = {f"text@{v:g}": x for v, x in by_level.items()}
    conditions = [{"condition": "boomerang_text", "level": float(v), "key": f"text@{v:g}", "signal_kept": k,
                   "signal_kept_unconditional": ku} for v, k, ku in zip(levels, kept, kept_unconditional)]
    info = {"settings": {"model": args.text_model, "weights_sha256": job["model"]["weights_sha256"],
                         "prompt_template": args.prompt_template,
                         "captions": "boomerang.training.ldm_parts.class_prompt(label), e.g. 'a handwritten seven'",
                         "levels": [float(v) for v in levels],
                         "anonymise": {k: job["settings"][k] for k in ("model", "scheduler", "steps", "eta", "schedule",
                                                                       "guidance_scale", "seed", "dtype")},
                         "sources": "the unconditional arm's, 28x28 zero-padded to 32x32; outputs channel-averaged, "
                                    "centre-cropped to 28x28 and rounded to 8 bits",
                         "sample_seeds": "the anonymise job's secret key (fresh per run)",
                         "threads": args.threads, "quick": args.quick},
            "anonymise_command": shown, "anonymise_s": round(anonymise_s, 1)}
    return conditions, released, info


def text_model_setting(value: str) -> str | None:
    """``--text-model``: the text-conditioned model (a name or a folder), or None for ``none`` (any case),
    which skips the text arm."""
    return None if value.lower() == "none" else value


def base_settings(args, n_sources: int, n_candidates: int, n_test: int, levels, seeds) -> dict:
    """The settings that make two runs' rows comparable (checked by ``--reuse``)."""
    return {"n_sources": n_sources, "n_candidates": n_candidates, "n_test": n_test,
            "levels": levels, "scheduler": args.scheduler, "steps": args.steps, "seed": 0,
            "train_epochs": args.epochs, "train_batch_size": args.train_batch_size, "train_lr": args.lr,
            "train_seeds": seeds}


def reuse_unconditional(path, settings: dict) -> dict:
    """The results file at ``path`` without its text arm, if its settings give the same rows as ``settings``.

    Raises:
        ValueError: a setting of :func:`base_settings` differs (the message names each, with the file's value).
    """
    old = json.loads(pathlib.Path(path).read_text())
    differ = [k for k, v in settings.items() if old["settings"].get(k) != v]
    if differ:
        theirs = ", ".join(f"{k}={old['settings'].get(k)!r}" for k in differ)
        raise ValueError(f"--reuse {path}: its {', '.join(differ)} differ from this run's ({theirs}); "
                         "rerun without --reuse")
    return old


def write_digits(folder: pathlib.Path, images, indices, *, pad: int = 0) -> list[str]:
    """Write uint8 digits ``[N, 1, 28, 28]`` as gray PNGs ``<index:05d>.png`` (zero-padded by ``pad``);
    returns the names in input order."""
    import numpy as np
    from PIL import Image

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for img, idx in zip(np.asarray(images), indices):
        name = f"{int(idx):05d}.png"
        Image.fromarray(np.pad(img[0], pad) if pad else img[0]).save(folder / name)
        names.append(name)
    return names


def release_pair(src, pool, out_root, levels, settings, *, key: str, verify_top: int = 1, features: str = "pixels",
                 max_level=None, prompt_template=None, threads: int = 1) -> dict:
    """Release ``src`` at ``levels`` twice with one job key (so the first draws are the same samples):
    ``plain``, then verified (``--verify-top``, ``--reference-pool pool``), each through
    :func:`boomerang.tasks.runner.run_job` (what ``boomerang anonymise`` runs).

    Returns:
        ``{arm: {"out", "links", "seconds", "report"}}`` for ``plain`` and ``verified`` (``report``: the
        job's private report.json, with the verification counts).
    """
    from boomerang.tasks.anonymise import AnonymiseOptions, AnonymiseTask
    from boomerang.tasks.job import JobSettings
    from boomerang.tasks.runner import run_job

    out_root = pathlib.Path(out_root)
    result = {}
    for arm in ("plain", "verified"):
        verify = dict(verify_top=verify_top, verify_features=features, max_level=max_level,
                      reference_pool=str(pool)) if arm == "verified" else {}
        links = out_root / f"{arm}_links.jsonl"
        opts = AnonymiseOptions(key=key, prompt_template=prompt_template, link_file=str(links), **verify)
        out = out_root / arm
        t0 = time.monotonic()
        rc = run_job(AnonymiseTask(), settings.replace(level=tuple(levels), num_samples=1), opts,
                     JobSettings(inputs=(str(src),), out=str(out), progress=False, threads=threads))
        if rc != 0:
            raise RuntimeError(f"anonymise ({arm}) exited with status {rc}")
        result[arm] = {"out": out, "links": links, "seconds": round(time.monotonic() - t0, 1),
                       "report": json.loads((out / ".job" / "report.json").read_text())}
    return result


def read_partial_release(out, link_file, names: list[str], levels) -> dict[float, tuple[list[int], "torch.Tensor"]]:  # noqa: F821
    """Like :func:`read_release`, for a release that may withhold items: ``{level: (kept, digits)}``, where
    ``kept`` are the indices (into ``names``) of the sources with an output and ``digits`` their outputs
    ``[len(kept), 1, 28, 28]`` in [-1, 1]."""
    import torch

    from boomerang.privacy.links import read_links

    pos = {n: i for i, n in enumerate(names)}
    found: dict[float, dict[int, pathlib.Path]] = {round(float(v), 6): {} for v in levels}
    for ln in read_links(link_file):
        level = float(levels[0]) if len(levels) == 1 else float(ln.extra["level"])
        found[round(level, 6)][pos[ln.source]] = pathlib.Path(out) / ln.output
    result = {}
    for level in levels:
        got = found[round(float(level), 6)]
        kept = sorted(got)
        result[float(level)] = (kept, torch.stack([output_to_digit(got[i]) for i in kept]) if kept else None)
    return result
