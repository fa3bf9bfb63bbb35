"""Reading and loading a model (part of :mod:`boomerang.models`): which family a folder is, its
:class:`ModelInfo` from JSON configs (no torch import), and ``from_pretrained`` of its components.

The families are asked in the order of :data:`FAMILIES`; the first whose
``find_layout`` recognises the folder reads and loads it. Adding a family means
adding its module and its class to :data:`FAMILIES`.

Weights are read from ``.safetensors`` files only, unless ``allow_pickle=True``:
``.bin`` / ``.ckpt`` / ``.pt`` files are Python pickles that can run arbitrary
code when loaded.
"""

from __future__ import annotations

import os
import pathlib

from boomerang.models.contract import DiffusionModel, ModelInfo
from boomerang.models.discovery import (
    check_weights,
    component_config,
    read_json,
    resolve_model,
    weight_files,
    weights_sha256,
)
from boomerang.models.errors import check_loading_info
from boomerang.models.pixel import PixelModel
from boomerang.models.quiet import quiet_loading
from boomerang.models.flux import FluxModel
from boomerang.models.sd3 import SD3Model
from boomerang.models.sdxl import SDXLModel
from boomerang.models.stable_diffusion import StableDiffusionModel
from boomerang.settings import DTYPES

__all__ = ["FAMILIES", "find_family", "read_model_info", "load_model", "check_cpu_offload"]

#: The model families, asked in this order which of them a folder belongs to.
FAMILIES: tuple[type[DiffusionModel], ...] = (PixelModel, StableDiffusionModel, SDXLModel, SD3Model, FluxModel)


def find_family(root: pathlib.Path) -> tuple[type[DiffusionModel], dict]:
    """The family of the model folder ``root`` and its layout (the paths of its components).

    Raises:
        ValueError: a folder no family recognises (the message names the pipeline class
            and lists the supported families), or an incomplete folder of a known family.
    """
    index_path = root / "model_index.json"
    index = read_json(index_path) if index_path.is_file() else None
    for family in FAMILIES:
        layout = family.find_layout(root, index)
        if layout is not None:
            return family, layout
    supported = ", ".join(f.description for f in FAMILIES)
    if index is not None:
        name = index.get("_class_name", "unknown")
        raise ValueError(f"{root}: {name} is not supported: model_index.json describes a {name} pipeline; "
                         f"supported are {supported}")
    raise ValueError(
        f"{root}: not a supported diffusers model folder: expected model_index.json (DDPM or Stable Diffusion "
        "layout) or a UNet2DModel config.json with a scheduler_config.json"
    )


def read_model_info(model: str | os.PathLike | None) -> ModelInfo:
    """Describe a model from its JSON configs only (no torch import, no weights read).

    Args:
        model: a local diffusers folder, a short name of a bundled model, a hub id
            (``owner/name``, resolved from the local Hugging Face cache when offline),
            or ``None`` for the bundled default model.

    Raises:
        ValueError: missing folder, unknown layout, unreadable config, or a hub
            id that is not available (the message says how to download it).
    """
    root = resolve_model(model, json_only=True)
    family, layout = find_family(root)
    return family.describe(root, layout)


def load_model(model: str | os.PathLike | None = None, *, device: str = "cpu", dtype: str = "float32",
               allow_pickle: bool = False, cpu_offload: bool = False) -> DiffusionModel:
    """Load a model of any family with diffusers' / transformers' ``from_pretrained``.

    Args:
        model: local diffusers folder, short name, hub id, or ``None`` (the bundled
            model, ``boomerang.assets.default_model_path()``).
        device: ``'cpu'``, ``'cuda'`` or ``'cuda:N'`` (checked by
            :func:`boomerang.settings.torch_device`).
        dtype: ``'float32'``, ``'float16'`` or ``'bfloat16'`` for the denoiser and
            text encoder; a VAE always runs in float32 (fp16 VAEs give NaN).
        allow_pickle: also accept ``.bin``/``.ckpt``/``.pt`` weights (pickles
            that can run code); by default only ``.safetensors`` are read.
        cpu_offload: model CPU offload (:mod:`boomerang.models.offload`, diffusers'
            ``enable_model_cpu_offload``): the networks load into CPU memory and each moves to
            ``device`` only while it runs. Needs a CUDA ``device`` and a CUDA GPU.

    Returns:
        The family's :class:`DiffusionModel`. On the CPU it is batch invariant
        (``model.batch_invariant``): its networks run batched with batch-invariant
        kernels, so a float32 sample does not depend on the batch size or order
        (:mod:`boomerang.models.invariant`; ``model.batch_invariant = False`` turns it off).

    Raises:
        ValueError: bad device/dtype (a SettingError for the device; also for ``cpu_offload`` without
            a CUDA device or without a CUDA GPU, :data:`~boomerang.models.offload.OFFLOAD_NEEDS_CUDA`), missing or
            unsupported folder, pickle weights without ``allow_pickle``, hub id not
            available offline.
        IncompleteWeightsError: (a ValueError) a component's weights lack parameters
            of its config (or hold unexpected or wrongly shaped ones): never loaded
            with random layers.
    """
    from boomerang.settings import torch_device

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if cpu_offload:
        check_cpu_offload(device)
    dev = torch_device(device)
    root = resolve_model(model, json_only=False, allow_pickle=allow_pickle)
    family, layout = find_family(root)
    info = family.describe(root, layout)
    present = [name for name in family.components if layout.get(name) is not None]  # (SDXL refiner: no text_encoder)
    for name in present:
        check_weights(layout[name], allow_pickle)

    import torch

    files: list[pathlib.Path] = []
    # Per component: safetensors when it has them, else (allow_pickle) the pickle file directly, so
    # that diffusers never first looks for a .safetensors file and logs an error line about it.
    safe: dict[str, bool] = {}
    for name in present:
        found = weight_files(layout[name], allow_pickle)
        safe[name] = any(p.name.endswith(".safetensors") for p in found)
        files += found
    sched_config = component_config(layout["scheduler"], "scheduler_config.json")

    def load_component(component, cls, **kwargs):
        """``cls.from_pretrained`` of one component, refused unless its weights match its config."""
        try:
            net, loading_info = cls.from_pretrained(layout[component], use_safetensors=safe[component],
                                                    output_loading_info=True, **kwargs)
        except RuntimeError as exc:  # diffusers raises on a tensor of the wrong shape instead of reporting it
            if "size mismatch for" not in str(exc):
                raise
            names = [part.split(":")[0].strip() for part in str(exc).split("size mismatch for ")[1:]]
            loading_info = {"mismatched_keys": names}
            net = None
        check_loading_info(component, layout[component], loading_info)
        return net

    try:
        with quiet_loading():
            components = family.load_components(layout, load_component=load_component,
                                                device=torch.device("cpu") if cpu_offload else dev,
                                                torch_dtype=getattr(torch, dtype))
    except (OSError, EnvironmentError) as exc:
        raise ValueError(f"cannot load the model from {root}: {exc}") from None
    model = family(info, scheduler_config=sched_config, device=dev, dtype=dtype,
                   weights_sha256=weights_sha256(files, root), **components)
    if cpu_offload:
        model.enable_cpu_offload()
    return model


def check_cpu_offload(device) -> None:
    """Refuse ``cpu_offload`` unless ``device`` is CUDA and a CUDA GPU is available.

    Raises:
        SettingError: one line, :data:`~boomerang.models.offload.OFFLOAD_NEEDS_CUDA` and what is missing.
    """
    from boomerang.errors import SettingError
    from boomerang.models.offload import OFFLOAD_NEEDS_CUDA

    if not str(device).strip().lower().startswith("cuda"):
        raise SettingError(f"{OFFLOAD_NEEDS_CUDA}; `device` is {device}")
    import torch

    if not torch.cuda.is_available():
        raise SettingError(f"{OFFLOAD_NEEDS_CUDA}; no CUDA GPU is available on this machine "
                           "(torch.cuda.is_available() is False): run without `cpu_offload`")
