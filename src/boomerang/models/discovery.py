"""Finding a model (part of :mod:`boomerang.models`): the bundled model, short names, local folders,
hub ids; JSON configs (no torch import); weight files, the pickle refusal and their sha256.

Which family a folder belongs to is asked of the families (:mod:`boomerang.models.loading`).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

__all__ = ["resolve_model", "hub_hint", "read_json", "component_config", "check_weights", "weight_files",
           "weights_sha256", "PICKLE_SUFFIXES", "WEIGHT_SUFFIXES"]

#: Weight files that are Python pickles (they can run code when loaded).
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES


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


def hub_hint(repo_id: str) -> str:
    """How to fetch hub model ``repo_id`` on a machine with internet access and pass it here (message text)."""
    # `hf` is the command huggingface_hub >= 0.34 installs (`huggingface-cli` is gone from 1.x).
    return (
        f"on a machine with internet access run\n"
        f"    python -c \"from huggingface_hub import snapshot_download; "
        f"print(snapshot_download('{repo_id}', allow_patterns=['*.json', '*.txt', '*.safetensors']))\"\n"
        f"(or `hf download {repo_id} --local-dir DIR`), copy the folder here and pass it with --model DIR"
    )


def resolve_model(model: str | os.PathLike | None, *, json_only: bool, allow_pickle: bool = False) -> pathlib.Path:
    """A local folder for ``model``: the bundled model, a local folder, or a hub id from the HF cache/hub.

    Args:
        model: None (the bundled default model), a short name of a bundled model
            (``ldm-mnist5k-text``), a local folder, or a hub id ``owner/name``.
        json_only: for a hub id, fetch only the configs (``read_model_info``), not the weights.
        allow_pickle: for a hub id, also fetch ``.bin`` weights.

    Raises:
        ValueError: a missing folder, a file, an unknown name, or a hub id that cannot be
            fetched (offline: the message says how to download it elsewhere).
    """
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
        raise ValueError(f"--model {text} is not a local folder and {why}; {hub_hint(text)}") from None
    return pathlib.Path(local)


def read_json(path: pathlib.Path) -> dict[str, Any]:
    """A JSON object from ``path``; ValueError naming the file if it is unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read model config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"model config {path} is not a JSON object")
    return data


def component_config(folder: pathlib.Path, name: str = "config.json") -> dict[str, Any]:
    """The config ``folder/name`` of a component; ValueError when it is missing (an incomplete folder)."""
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{folder}: missing {name}; the model folder is incomplete")
    return read_json(path)


def check_weights(folder: pathlib.Path, allow_pickle: bool) -> None:
    """Refuse a component folder without weights, or with pickle weights only unless ``allow_pickle``.

    Raises:
        ValueError: no weight files; or only pickles (``.bin``, ``.ckpt``, ...) without
            ``allow_pickle`` (the message says how to convert them to safetensors).
    """
    files = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)] if folder.is_dir() else []
    if any(p.name.endswith(".safetensors") for p in files):
        return
    pickles = [p for p in files if p.name.endswith(PICKLE_SUFFIXES)]
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


def weight_files(folder: pathlib.Path, allow_pickle: bool) -> list[pathlib.Path]:
    """The weight files ``from_pretrained`` reads from ``folder``: the plain (not fp16/ema variant)
    safetensors files, or with ``allow_pickle`` and no safetensors the pickle files."""
    files = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]
    # from_pretrained without `variant` reads the plain files, not e.g. *.fp16.safetensors
    plain = [p for p in files if not any(f".{v}." in p.name for v in ("fp16", "bf16", "fp32", "non_ema", "ema"))]
    files = plain or files
    safe = [p for p in files if p.name.endswith(".safetensors")]
    return safe if safe or not allow_pickle else files
