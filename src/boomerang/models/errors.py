"""The errors of loading and calling a model, and their messages (part of :mod:`boomerang.models`).

Torch-free at import (torch is imported inside :func:`nonfinite_message` only).
"""

from __future__ import annotations

from boomerang.errors import SettingError

__all__ = ["IncompleteWeightsError", "NonFiniteOutputError", "check_loading_info", "nonfinite_message", "names"]


class IncompleteWeightsError(ValueError):
    """A component's weight files do not match its config: parameters are missing
    (they would be left randomly initialised) or unexpected, or shaped differently."""


class NonFiniteOutputError(SettingError):
    """A network returned NaN or inf in the dtype in use (see :func:`nonfinite_message`); a
    SettingError whose message names the ``dtype`` parameter (the CLI: ``--dtype``)."""


#: At most this many parameter names are listed in an error message.
MAX_NAMES = 8


def names(keys) -> str:
    """``'a, b, c ... (n more)'``: the sorted names, at most :data:`MAX_NAMES` of them shown."""
    keys = sorted(str(k) for k in keys)
    shown = ", ".join(keys[:MAX_NAMES])
    return shown + (f" ... ({len(keys) - MAX_NAMES} more)" if len(keys) > MAX_NAMES else "")


def check_loading_info(component: str, folder, loading_info: dict) -> None:
    """Refuse weights that do not cover the component's parameters exactly.

    Args:
        component: ``'unet'``, ``'vae'`` or ``'text_encoder'`` (for the message).
        folder: the component's folder.
        loading_info: what ``from_pretrained(..., output_loading_info=True)`` of
            diffusers / transformers returns: ``missing_keys``, ``unexpected_keys``,
            ``mismatched_keys`` (lists or sets).

    Raises:
        IncompleteWeightsError: any missing, unexpected or mismatched parameter; the
            message names them (``conv_out.weight, conv_out.bias``) and says what to do.
    """
    missing = list(loading_info.get("missing_keys") or [])
    unexpected = list(loading_info.get("unexpected_keys") or [])
    mismatched = [m[0] if isinstance(m, (list, tuple)) else m for m in (loading_info.get("mismatched_keys") or [])]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing parameter(s): {names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected parameter(s): {names(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} parameter(s) of the wrong shape: {names(mismatched)}")
    risk = ("loading them would leave layers randomly initialised" if (missing or mismatched)
            else "they belong to another model or version")
    raise IncompleteWeightsError(
        f"{folder}: the {component} weights do not match its config.json ({'; '.join(parts)}); "
        f"{risk}. Use the complete weights of this model "
        "(download the folder again, or export it again with save_pretrained)"
    )


def nonfinite_message(model, where: str = "the model") -> str:
    """The message for NaN/inf outputs: names the dtype in use and what to try.

    Args:
        model: the :class:`boomerang.models.DiffusionModel` (its ``dtype`` and the
            parameters of its ``networks`` are inspected), or a dtype name.
        where: which output was not finite, e.g. ``'the UNet'``, ``'the VAE decoder'``.

    The message marks the parameter in backticks (a :class:`SettingError` template: the
    library says ``dtype``, the CLI ``--dtype``). Weights that are themselves NaN/inf
    are named first, whatever the dtype (a damaged weights file). Otherwise float16 /
    bfloat16: try float32 (bfloat16 from float16); float32: the model overflows even there.
    """
    dtype = model if isinstance(model, str) else getattr(model, "dtype", "float32")
    head = f"{where} produced NaN or infinite values with `dtype` {dtype}"
    bad, any_nan = [], False
    if not isinstance(model, str):
        for comp in getattr(model, "networks", ("unet", "vae", "text_encoder")):
            net = getattr(model, comp, None)
            if net is None:
                continue
            import torch

            for name, t in net.state_dict().items():
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    bad.append(f"{comp}.{name}")
                    any_nan = any_nan or bool(torch.isnan(t).any())
    if bad and dtype == "float16" and not any_nan:  # inf only: finite weights beyond float16's range (65504)
        return (f"{head}: {len(bad)} weight tensor(s) overflow to inf in float16 ({names(bad)}): their values exceed "
                "float16's range (65504); run again with `dtype` float32 (or bfloat16 on a GPU that has it)")
    if bad:  # damaged weights first: no dtype would help
        return (f"{head}: {len(bad)} weight tensor(s) hold NaN/inf ({names(bad)}); the weights file is damaged: "
                "download or export the model again")
    if dtype == "float16":
        return f"{head}; float16 overflows in some models: run again with `dtype` float32 (or bfloat16 on a GPU that has it)"
    if dtype == "bfloat16":
        return f"{head}; run again with `dtype` float32"
    return (f"{head} (already the widest dtype): the model's weights or its scheduler config do not fit this "
            "input; check the model with another image, `scheduler` ddpm, or a lower `level`")
