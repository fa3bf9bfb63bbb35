"""Finding and describing a model (part of :mod:`boomerang.models`): the bundled model, local folders,
hub ids, diffusers layouts, JSON configs (no torch import), weight files and their sha256."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from dataclasses import dataclass
from typing import Any

__all__ = ["DTYPES", "ModelInfo", "read_model_info", "weights_sha256"]

DTYPES = ("float32", "float16", "bfloat16")
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
_WEIGHT_SUFFIXES = (".safetensors",) + _PICKLE_SUFFIXES
_LATENT_COMPONENTS = ("unet", "vae", "text_encoder")


@dataclass(frozen=True)
class ModelInfo:
    """What the CLI needs to know about a model before loading it.

    Attributes:
        source: the local folder (str) the model is read from.
        kind: ``'pixel'`` (denoiser on images) or ``'latent'`` (Stable Diffusion).
        num_train_timesteps: T of the model's training schedule.
        image_channels: channels of the images the model takes (1 or 3).
        native_size: pixel models: the only side length (square images) the
            UNet was trained on; latent models: ``None`` (any size that is a
            multiple of ``size_multiple``).
        size_multiple: latent models: the VAE downsampling factor (8 for SD);
            pixel models: the UNet's total downsampling factor (informational).
        takes_prompt: True for text-conditioned (latent SD) models.
        vae_width: latent models: channels of the VAE's full-size layers (its first
            ``block_out_channels``; 128 for SD), for memory estimates; pixel models: ``None``.
    """

    source: str
    kind: str
    num_train_timesteps: int
    image_channels: int
    native_size: int | None
    size_multiple: int
    takes_prompt: bool
    vae_width: int | None = None


# ----------------------------------------------------------------------------- resolving a model argument


def _bundled_model_path() -> pathlib.Path:
    try:
        from boomerang import assets
    except ImportError as exc:  # the bundled-model module is another issue
        raise ValueError(
            "no --model given and the bundled default model is not available in this installation "
            f"({exc}); pass --model PATH_TO_A_DIFFUSERS_FOLDER"
        ) from None
    try:
        return pathlib.Path(assets.default_model_path())
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise ValueError(f"no --model given and the bundled default model is missing: {exc}; pass --model PATH") from None


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(p and not p.startswith(".") for p in parts)
        and not text.startswith(("/", "~", "."))
        and os.sep not in text.replace("/", "")
    )


def _hub_hint(repo_id: str) -> str:
    # `hf` is the command huggingface_hub >= 0.34 installs (`huggingface-cli` is gone from 1.x).
    return (
        f"on a machine with internet access run\n"
        f"    python -c \"from huggingface_hub import snapshot_download; "
        f"print(snapshot_download('{repo_id}', allow_patterns=['*.json', '*.txt', '*.safetensors']))\"\n"
        f"(or `hf download {repo_id} --local-dir DIR`), copy the folder here and pass it with --model DIR"
    )


def _resolve(model: str | os.PathLike | None, *, json_only: bool, allow_pickle: bool = False) -> pathlib.Path:
    """A local folder for ``model``: the bundled model, a local folder, or a hub id from the HF cache/hub."""
    if model is None:
        path = _bundled_model_path()
        if not path.is_dir():
            raise ValueError(f"the bundled default model folder {path} does not exist; pass --model PATH")
        return path
    path = pathlib.Path(os.path.expanduser(str(model)))
    if path.exists():
        if not path.is_dir():
            raise ValueError(
                f"--model {model}: expected a diffusers model folder (with model_index.json, or a UNet config.json), "
                "got a file; single-file checkpoints are not supported: convert them to a diffusers folder first"
            )
        return path
    text = str(model)
    from boomerang.assets import named_model_path  # short names of bundled models (--model ldm-mnist5k-text)

    try:
        if (named := named_model_path(text)) is not None:
            return named
    except FileNotFoundError as exc:
        raise ValueError(f"--model {text}: {exc}") from None
    if not _looks_like_hub_id(text):
        raise ValueError(f"--model {model}: no such folder; pass a local diffusers model folder (or a hub id owner/name)")
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        from huggingface_hub import snapshot_download

        # Only what load_model reads: configs, and the plain weight files of the components
        # (not root-level single-file checkpoints, precision variants or the safety checker).
        patterns = ["*.json", "*.txt"]
        if not json_only:
            patterns += ["*/*.safetensors", "diffusion_pytorch_model.safetensors"]
            if allow_pickle:
                patterns += ["*/*.bin", "diffusion_pytorch_model.bin"]
        ignore = ["*.fp16.*", "*.bf16.*", "*non_ema*", "*.ema.*", "safety_checker/*"]
        local = snapshot_download(text, allow_patterns=patterns, ignore_patterns=ignore, local_files_only=offline)
    except Exception as exc:  # noqa: BLE001 -- any hub/network failure gets the same actionable message
        why = "the hub is not reachable (HF_HUB_OFFLINE is set)" if offline else f"it could not be downloaded ({type(exc).__name__})"
        raise ValueError(f"--model {text} is not a local folder and {why}; {_hub_hint(text)}") from None
    return pathlib.Path(local)


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read model config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"model config {path} is not a JSON object")
    return data


def _layout(root: pathlib.Path) -> dict[str, Any]:
    """Find the layout of a model folder: kind and the paths of its component configs."""
    index = root / "model_index.json"
    if index.is_file():
        entries = _read_json(index)
        if "text_encoder_2" in entries or "transformer" in entries:
            raise ValueError(
                f"{root}: {entries.get('_class_name', 'this pipeline')} (SDXL, SD3 or a transformer model) is not "
                "supported; use a Stable Diffusion 1.x/2.x folder or a pixel-space UNet2DModel pipeline"
            )
        if "unet" in entries and "vae" in entries and "text_encoder" in entries and "tokenizer" in entries:
            return {"kind": "latent", "unet": root / "unet", "scheduler": root / "scheduler",
                    "vae": root / "vae", "text_encoder": root / "text_encoder", "tokenizer": root / "tokenizer"}
        if "unet" in entries and "scheduler" in entries and "vae" not in entries:
            return {"kind": "pixel", "unet": root / "unet", "scheduler": root / "scheduler"}
        raise ValueError(
            f"{root}: model_index.json describes a {entries.get('_class_name', 'unknown')} pipeline; supported are "
            "pixel-space UNet pipelines (DDPMPipeline/DDIMPipeline layout) and Stable Diffusion 1.x/2.x"
        )
    config = root / "config.json"
    if config.is_file() and _read_json(config).get("_class_name") == "UNet2DModel":
        for sched in (root / "scheduler_config.json", root / "scheduler" / "scheduler_config.json"):
            if sched.is_file():
                return {"kind": "pixel", "unet": root, "scheduler": sched.parent}
        raise ValueError(f"{root}: a UNet2DModel folder needs a scheduler_config.json beside config.json (or in scheduler/)")
    raise ValueError(
        f"{root}: not a supported diffusers model folder: expected model_index.json (DDPM or Stable Diffusion "
        "layout) or a UNet2DModel config.json with a scheduler_config.json"
    )


def _component_config(folder: pathlib.Path, name: str = "config.json") -> dict[str, Any]:
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{folder}: missing {name}; the model folder is incomplete")
    return _read_json(path)


def _side(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square UNet sample_size {value} is not supported")
        value = value[0]
    return int(value)


def _info_from_layout(root: pathlib.Path, layout: dict[str, Any]) -> ModelInfo:
    unet = _component_config(layout["unet"])
    sched = _component_config(layout["scheduler"], "scheduler_config.json")
    T = int(sched.get("num_train_timesteps", 1000))
    if layout["kind"] == "pixel":
        n_down = len(unet.get("block_out_channels", (64,)))
        return ModelInfo(str(root), "pixel", T, int(unet.get("in_channels", 3)), _side(unet.get("sample_size")),
                         2 ** (n_down - 1), False)
    vae = _component_config(layout["vae"])
    factor = 2 ** (len(vae.get("block_out_channels", (1, 1, 1, 1))) - 1)
    width = int((vae.get("block_out_channels") or (128,))[0])
    return ModelInfo(str(root), "latent", T, int(vae.get("in_channels", 3)), None, factor, True, width)


def read_model_info(model: str | os.PathLike | None) -> ModelInfo:
    """Describe a model from its JSON configs only (no torch import, no weights read).

    Args:
        model: a local diffusers folder, a hub id (``owner/name``, resolved from
            the local Hugging Face cache when offline), or ``None`` for the
            bundled default model.

    Raises:
        ValueError: missing folder, unknown layout, unreadable config, or a hub
            id that is not available (the message says how to download it).
    """
    root = _resolve(model, json_only=True)
    return _info_from_layout(root, _layout(root))


def _check_weights(folder: pathlib.Path, allow_pickle: bool) -> None:
    files = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)] if folder.is_dir() else []
    if any(p.name.endswith(".safetensors") for p in files):
        return
    pickles = [p for p in files if p.name.endswith(_PICKLE_SUFFIXES)]
    if not pickles:
        raise ValueError(f"{folder}: no weight files (*.safetensors) found; the model folder is incomplete")
    if not allow_pickle:
        raise ValueError(
            f"{pickles[0]} is a pickle file, which can run arbitrary code when loaded, and the folder has no "
            ".safetensors weights. If you trust its source, pass --allow-pickle (allow_pickle=True); or convert it "
            "once with: python -c \"import diffusers; m = diffusers.AutoModel.from_pretrained(DIR); "
            "m.save_pretrained(DIR, safe_serialization=True)\" (use the component's class, e.g. UNet2DModel)"
        )


def weights_sha256(paths: list[pathlib.Path], root: pathlib.Path) -> str:
    """SHA-256 over the weight files: for each file in sorted relative-path order,
    its relative path and its bytes. Identifies exactly the weights loaded."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _weight_files(folder: pathlib.Path, allow_pickle: bool) -> list[pathlib.Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    # from_pretrained without `variant` reads the plain files, not e.g. *.fp16.safetensors
    plain = [p for p in files if not any(f".{v}." in p.name for v in ("fp16", "bf16", "fp32", "non_ema", "ema"))]
    files = plain or files
    safe = [p for p in files if p.name.endswith(".safetensors")]
    return safe if safe or not allow_pickle else files
