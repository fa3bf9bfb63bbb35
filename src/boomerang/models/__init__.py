"""Loading pretrained diffusion models and calling them (Boomerang step 1-4 building blocks).

Two model families are supported, both in diffusers' folder layouts:

* **pixel** -- a denoiser on images: a ``DDPMPipeline``/``DDIMPipeline`` folder
  (``model_index.json``, ``unet/``, ``scheduler/``) or a bare ``UNet2DModel``
  folder (``config.json`` + weights) with a ``scheduler_config.json`` beside it
  or in ``scheduler/``. encode/decode are the identity.
* **latent** -- Stable Diffusion 1.x / 2.x: ``vae`` (AutoencoderKL),
  ``text_encoder`` (CLIPTextModel), ``tokenizer`` (CLIPTokenizer), ``unet``
  (UNet2DConditionModel), ``scheduler``. encode is the VAE posterior mode times
  the VAE scaling factor (as in the authors' notebook); decode inverts it.

:func:`read_model_info` reads JSON configs only (no torch import) so that the
CLI can validate sizes and timesteps before anything heavy is loaded.

Weights are read from ``.safetensors`` files only, unless ``allow_pickle=True``:
``.bin`` / ``.ckpt`` / ``.pt`` files are Python pickles that can run arbitrary
code when loaded.

The code is in three parts: :mod:`boomerang._model_files` (finding a model and
reading its configs, torch-free), :mod:`boomerang._invariant` (batch-invariant
kernels) and this module (the loaded :class:`DiffusionModel`, loading, and the
errors), which is the public face: every name is importable from here.
"""

from __future__ import annotations

import os
import pathlib

__all__ = [
    "ModelInfo",
    "DiffusionModel",
    "IncompleteWeightsError",
    "NonFiniteOutputError",
    "read_model_info",
    "load_model",
    "nonfinite_message",
    "DTYPES",
]

from boomerang._invariant import (  # noqa: F401  (re-exported)
    INVARIANT_STRATEGIES,
    _conv_items,
    _group_norm_contiguous,
    _linear_rows,
    _patchable,
    _per_item,
    invariant_kernels,
)
from boomerang._model_files import (  # noqa: F401  (re-exported)
    _LATENT_COMPONENTS,
    DTYPES,
    ModelInfo,
    _check_weights,
    _component_config,
    _hub_hint,
    _info_from_layout,
    _layout,
    _resolve,
    _weight_files,
    read_model_info,
    weights_sha256,
)


# ----------------------------------------------------------------------------- loading


class IncompleteWeightsError(ValueError):
    """A component's weight files do not match its config: parameters are missing
    (they would be left randomly initialised) or unexpected, or shaped differently."""


from boomerang.errors import SettingError  # noqa: E402


class NonFiniteOutputError(SettingError):
    """A network returned NaN or inf in the dtype in use (see :func:`nonfinite_message`); a
    SettingError whose message names the ``dtype`` parameter (the CLI: ``--dtype``)."""


#: At most this many parameter names are listed in an error message.
_MAX_NAMES = 8


def _names(keys) -> str:
    keys = sorted(str(k) for k in keys)
    shown = ", ".join(keys[:_MAX_NAMES])
    return shown + (f" ... ({len(keys) - _MAX_NAMES} more)" if len(keys) > _MAX_NAMES else "")


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
        parts.append(f"{len(missing)} missing parameter(s): {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected parameter(s): {_names(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} parameter(s) of the wrong shape: {_names(mismatched)}")
    risk = ("loading them would leave layers randomly initialised" if (missing or mismatched)
            else "they belong to another model or version")
    raise IncompleteWeightsError(
        f"{folder}: the {component} weights do not match its config.json ({'; '.join(parts)}); "
        f"{risk}. Use the complete weights of this model "
        "(download the folder again, or export it again with save_pretrained)"
    )


class _quiet_loading:
    """Silence diffusers' / transformers' own warnings about missing weights while we
    load (we raise one clear error for them instead); restores the verbosity."""

    def __enter__(self):
        from diffusers.utils import logging as dlog

        self._saved = [(dlog, dlog.get_verbosity())]
        dlog.set_verbosity_error()
        try:
            from transformers.utils import logging as tlog

            self._saved.append((tlog, tlog.get_verbosity()))
            tlog.set_verbosity_error()
            self._bars = tlog.is_progress_bar_enabled()
            tlog.disable_progress_bar()  # transformers 5 draws a "Loading weights" bar per model
        except ImportError:  # pragma: no cover - transformers is a dependency
            pass
        return self

    def __exit__(self, *exc):
        for mod, level in self._saved:
            mod.set_verbosity(level)
        if getattr(self, "_bars", False):
            from transformers.utils import logging as tlog

            tlog.enable_progress_bar()
        return False


def nonfinite_message(model, where: str = "the model") -> str:
    """The message for NaN/inf outputs: names the dtype in use and what to try.

    Args:
        model: the :class:`DiffusionModel` (its ``dtype``, networks and parameters
            are inspected), or a dtype name.
        where: which output was not finite, e.g. ``'the UNet'``, ``'the VAE decoder'``.

    The message marks the parameter in backticks (a :class:`SettingError` template: the
    library says ``dtype``, the CLI ``--dtype``). Weights that are themselves NaN/inf
    are named first, whatever the dtype (a damaged weights file). Otherwise float16 /
    bfloat16: try float32 (bfloat16 from float16); float32: the model overflows even there.
    """
    dtype = model if isinstance(model, str) else getattr(model, "dtype", "float32")
    head = f"{where} produced NaN or infinite values with `dtype` {dtype}"
    bad = []
    if not isinstance(model, str):
        for comp in ("unet", "vae", "text_encoder"):
            net = getattr(model, comp, None)
            if net is None:
                continue
            import torch

            for name, t in net.state_dict().items():
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    bad.append(f"{comp}.{name}")
    if bad:  # damaged weights first: no dtype would help
        return (f"{head}: {len(bad)} weight tensor(s) hold NaN/inf ({_names(bad)}); the weights file is damaged: "
                "download or export the model again")
    if dtype == "float16":
        return f"{head}; float16 overflows in some models: run again with `dtype` float32 (or bfloat16 on a GPU that has it)"
    if dtype == "bfloat16":
        return f"{head}; run again with `dtype` float32"
    return (f"{head} (already the widest dtype): the model's weights or its scheduler config do not fit this "
            "input; check the model with another image, `scheduler` ddpm, or a lower `level`")


class DiffusionModel:
    """A loaded model: diffusers components plus the calls Boomerang needs.

    Fields of :class:`ModelInfo`, plus ``weights_sha256`` (str), ``scheduler_config``
    (dict), ``device`` (torch.device), ``dtype`` (str), and the components
    ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` (None for pixel models).
    Images are float tensors [B, C, H, W] in [-1, 1]; latents are [B, 4, H/f, W/f]
    (f = size_multiple) in the UNet's scaled latent space.
    """

    def __init__(self, info: ModelInfo, *, unet, scheduler_config, device, dtype: str, weights_sha256: str,
                 vae=None, text_encoder=None, tokenizer=None):
        self.info = info
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler_config = dict(scheduler_config)
        self.device = device
        self.dtype = dtype
        self.weights_sha256 = weights_sha256
        self.unet_calls = 0  # incremented per denoiser call (tests, reports)
        # A sample never depends on its batch (see "batch invariance" above): on the CPU by
        # default, batched with invariant kernels; elsewhere only when asked, item by item.
        on_cpu = getattr(device, "type", str(device)) == "cpu"
        self.batch_invariant = on_cpu
        self.invariant_strategy = "kernels" if on_cpu else "per_item"
        self._patches: dict[str, list] = {}

    def _invariant(self, component: str):
        """The context to run ``component`` (e.g. 'unet') in: invariant kernels or nothing."""
        import contextlib

        if not self._kernels_mode():
            return contextlib.nullcontext()
        if component not in self._patches:
            self._patches[component] = _patchable([getattr(self, component)])
        return invariant_kernels(self._patches[component])

    def _strategy(self) -> str | None:
        """None (not invariant), 'kernels' or 'per_item'. Raises ValueError for an unknown strategy."""
        if not self.batch_invariant:
            return None
        if self.invariant_strategy not in INVARIANT_STRATEGIES:
            raise ValueError(f"invariant_strategy must be one of {INVARIANT_STRATEGIES}, got {self.invariant_strategy!r}")
        return self.invariant_strategy

    def _kernels_mode(self) -> bool:
        return self._strategy() == "kernels"

    def _per_item_mode(self) -> bool:
        return self._strategy() == "per_item"

    def _vae_per_item(self) -> bool:
        """The VAE runs item by item whenever the model is batch invariant (see above)."""
        return self._strategy() is not None

    # ModelInfo fields
    source = property(lambda self: self.info.source)
    kind = property(lambda self: self.info.kind)
    num_train_timesteps = property(lambda self: self.info.num_train_timesteps)
    image_channels = property(lambda self: self.info.image_channels)
    native_size = property(lambda self: self.info.native_size)
    size_multiple = property(lambda self: self.info.size_multiple)
    takes_prompt = property(lambda self: self.info.takes_prompt)

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    # --- encode / decode (paper: x0 in the model's space and back)

    def encode(self, x, *, generators=None):
        """Images [B, C, H, W] in [-1, 1] -> the model's space (float32, on ``device``).

        Pixel models: identity. Latent models: the VAE posterior **mode** times
        ``scaling_factor`` (the authors' notebook); with ``generators`` (one per
        item) a posterior **sample** drawn from each item's generator instead
        (diffusers' img2img pipeline: mean_i + std_i * randn(generator_i)).

        Raises:
            ValueError: ``generators`` given with a length other than B.
        """
        import torch

        x = x.to(self.device, torch.float32)
        if self.kind == "pixel":
            return x
        vae_dtype = self.vae.dtype
        with torch.no_grad():
            if generators is None:
                if self._vae_per_item():
                    z = _per_item(lambda xi: self.vae.encode(xi.to(vae_dtype)).latent_dist.mode(), x)
                else:
                    z = self.vae.encode(x.to(vae_dtype)).latent_dist.mode()
            else:
                if len(generators) != x.shape[0]:
                    raise ValueError(f"need one generator per image: {len(generators)} generators for {x.shape[0]} images")
                # diffusers' img2img pipeline encodes item by item and draws each posterior sample
                # mean_i + std_i * randn(generator_i); the draw is the same after one batched encode.
                from diffusers.utils.torch_utils import randn_tensor

                if self._vae_per_item():
                    dists = [self.vae.encode(x[i : i + 1].to(vae_dtype)).latent_dist for i in range(x.shape[0])]
                    means = torch.cat([d.mean for d in dists])
                    stds = torch.cat([d.std for d in dists])
                else:
                    dist = self.vae.encode(x.to(vae_dtype)).latent_dist
                    means, stds = dist.mean, dist.std
                noise = torch.cat([randn_tensor((1, *means.shape[1:]), generator=g, device=means.device, dtype=means.dtype)
                                   for g in generators])
                z = means + stds * noise
        if not bool(torch.isfinite(z).all()):
            raise NonFiniteOutputError(nonfinite_message(self, "the VAE encoder"))
        return (z * self.vae.config.scaling_factor).to(torch.float32)

    def decode(self, z):
        """The model's space -> images [B, C, H, W] float32 on the CPU (not clamped).

        Latent models decode with the VAE in float32 (it is kept in float32 at
        load time: float16 VAEs overflow to NaN). Raises
        :class:`NonFiniteOutputError` (a ValueError; message from
        :func:`nonfinite_message`, naming the dtype in use) if the result is not
        finite, instead of returning NaN/black images.
        """
        import torch

        if self.kind == "pixel":
            out = z.to(torch.float32)
        else:
            z = z.to(self.vae.dtype) / self.vae.config.scaling_factor
            with torch.no_grad():
                if self._vae_per_item():
                    out = _per_item(lambda zi: self.vae.decode(zi).sample, z)
                else:
                    out = self.vae.decode(z).sample
            out = out.to(torch.float32)
        if not torch.isfinite(out).all():
            where = "the model" if self.kind == "pixel" else "the VAE decoder"
            raise NonFiniteOutputError(nonfinite_message(self, where))
        return out.cpu()

    # --- prompts (classifier-free guidance)

    def encode_prompt(self, prompt: str = "", negative_prompt: str = "", guidance_scale: float = 1.0):
        """CLIP embeddings of a prompt, and of the negative prompt when guidance is used.

        Returns ``(cond, uncond)``: tensors [1, L, D] in the UNet's dtype, ``uncond``
        is None when ``guidance_scale <= 1`` (no unconditional pass). Pixel
        models return ``(None, None)``. Tokenised like diffusers' pipelines:
        padding to ``model_max_length``, truncation. Results are cached per
        (prompt, negative prompt, guidance on/off), so that a job run in many
        batches encodes its prompt once (the cached tensors are returned: do
        not modify them in place).
        """
        import torch

        if self.kind == "pixel":
            return None, None
        key = (prompt or "", negative_prompt or "", guidance_scale > 1)
        cache = self.__dict__.setdefault("_prompt_cache", {})
        if key in cache:
            return cache[key]

        def embed(text: str):
            ids = self.tokenizer(text, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self.device)
            mask = None
            if getattr(self.text_encoder.config, "use_attention_mask", False):
                mask = torch.ones_like(ids)
            with torch.no_grad():
                return self.text_encoder(ids, attention_mask=mask)[0].to(self.torch_dtype)

        cond = embed(prompt or "")
        uncond = embed(negative_prompt or "") if guidance_scale > 1 else None
        if len(cache) >= 8:
            cache.clear()
        cache[key] = (cond, uncond)
        return cond, uncond

    # --- the denoiser

    def predict(self, x_in, t, *, cond=None, uncond=None, guidance_scale: float = 1.0):
        """The UNet's output (eps, v or x0, as its scheduler config says) for a batch.

        Args:
            x_in: [B, C, h, w] model input (after ``scheduler.scale_model_input``).
            t: the training timestep (int or 0-d tensor), the same for the batch.
            cond, uncond: prompt embeddings [1, L, D] from :meth:`encode_prompt`.
            guidance_scale: classifier-free guidance w; with ``uncond`` the UNet
                runs on [uncond; cond] batched together and returns
                ``u + w (c - u)``; ``w <= 1`` or no ``uncond``: one conditional pass.
                The UNet sees the whole 2B batch at once; with
                ``invariant_strategy='per_item'`` each item's [uncond_i; cond_i] pair
                separately.

        Returns: float32 tensor shaped like ``x_in``.

        Raises:
            NonFiniteOutputError: the UNet returned NaN/inf (message names the dtype).
        """
        import torch

        self.unet_calls += 1
        x = x_in.to(self.device, self.torch_dtype)
        if self._per_item_mode() and x.shape[0] > 1:
            out = _per_item(self._predict, x, t, cond, uncond, guidance_scale)
        else:
            with self._invariant("unet"):
                out = self._predict(x, t, cond, uncond, guidance_scale)
        if not bool(torch.isfinite(out).all()):
            raise NonFiniteOutputError(nonfinite_message(self, "the UNet"))
        return out

    def _predict(self, x, t, cond, uncond, guidance_scale):
        import torch

        batch = x.shape[0]
        with torch.no_grad():
            if self.kind == "pixel":
                return self.unet(x, t).sample.to(torch.float32)
            if uncond is not None and guidance_scale > 1:
                emb = torch.cat([uncond.expand(batch, -1, -1), cond.expand(batch, -1, -1)])
                out = self.unet(torch.cat([x, x]), t, encoder_hidden_states=emb).sample.to(torch.float32)
                out_uncond, out_cond = out.chunk(2)
                return out_uncond + guidance_scale * (out_cond - out_uncond)
            return self.unet(x, t, encoder_hidden_states=cond.expand(batch, -1, -1)).sample.to(torch.float32)


def _parse_device(device: str):
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device must be cpu or cuda (or cuda:N), got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA GPU is available; use --device cpu")
    return dev


def load_model(model: str | os.PathLike | None = None, *, device: str = "cpu", dtype: str = "float32",
               allow_pickle: bool = False) -> DiffusionModel:
    """Load a pixel-space or Stable Diffusion model with diffusers' ``from_pretrained``.

    Args:
        model: local diffusers folder, hub id, or ``None`` (the bundled model,
            ``boomerang.assets.default_model_path()``).
        device: ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        dtype: ``'float32'``, ``'float16'`` or ``'bfloat16'`` for the UNet and
            text encoder; the VAE always runs in float32 (fp16 VAEs give NaN).
        allow_pickle: also accept ``.bin``/``.ckpt``/``.pt`` weights (pickles
            that can run code); by default only ``.safetensors`` are read.

    On the CPU the model is batch invariant (``model.batch_invariant``): its
    networks run batched with batch-invariant kernels, so a float32 sample
    does not depend on the batch size or order (see "batch invariance" in
    this module; ``model.batch_invariant = False`` turns it off).

    Raises:
        ValueError: bad device/dtype, missing or unsupported folder, pickle
            weights without ``allow_pickle``, hub id not available offline.
        IncompleteWeightsError: (a ValueError) the UNet, VAE or text encoder
            weights lack parameters of their config (or hold unexpected or
            wrongly shaped ones): never loaded with random layers.
    """
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    dev = _parse_device(device)
    root = _resolve(model, json_only=False, allow_pickle=allow_pickle)
    layout = _layout(root)
    info = _info_from_layout(root, layout)
    components = ("unet",) if info.kind == "pixel" else _LATENT_COMPONENTS
    for name in components:
        _check_weights(layout[name], allow_pickle)

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel

    torch_dtype = getattr(torch, dtype)
    files: list[pathlib.Path] = []
    # Per component: safetensors when it has them, else (allow_pickle) the pickle file directly, so
    # that diffusers never first looks for a .safetensors file and logs an error line about it.
    safe: dict[str, bool] = {}
    for name in components:
        found = _weight_files(layout[name], allow_pickle)
        safe[name] = any(p.name.endswith(".safetensors") for p in found)
        files += found
    sched_config = _component_config(layout["scheduler"], "scheduler_config.json")
    def checked(component, cls, **kwargs):
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
        with _quiet_loading():
            if info.kind == "pixel":
                unet = checked("unet", UNet2DModel, low_cpu_mem_usage=False, torch_dtype=torch_dtype)
                extra = {}
            else:
                from transformers import CLIPTextModel, CLIPTokenizer

                unet = checked("unet", UNet2DConditionModel, low_cpu_mem_usage=False, torch_dtype=torch_dtype)
                vae = checked("vae", AutoencoderKL, low_cpu_mem_usage=False, torch_dtype=torch.float32)
                text_encoder = checked("text_encoder", CLIPTextModel, dtype=torch_dtype)
                tokenizer = CLIPTokenizer.from_pretrained(layout["tokenizer"])
                extra = {"vae": vae.to(dev).eval(), "text_encoder": text_encoder.to(dev).eval(), "tokenizer": tokenizer}
    except (OSError, EnvironmentError) as exc:
        raise ValueError(f"cannot load the model from {root}: {exc}") from None
    unet = unet.to(dev).eval()
    return DiffusionModel(info, unet=unet, scheduler_config=sched_config, device=dev, dtype=dtype,
                          weights_sha256=weights_sha256(files, root), **extra)
