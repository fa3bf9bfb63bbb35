"""The denoiser contract: everything the Boomerang algorithm sees of a diffusion model.

Like k-diffusion's one denoiser interface with a small wrapper per model
family, the sampler (``boomerang.core``), tiled enhancement and the dataset
commands call a model only through :class:`DiffusionModel`:

* **spaces** -- :meth:`DiffusionModel.encode` images [B, C, H, W] in [-1, 1]
  into the model's space and :meth:`DiffusionModel.decode` back;
  :meth:`DiffusionModel.model_shape` gives the model-space shape of an image.
  The model's space is always a grid [B, c, h, w] with h = H / ``space_factor``;
  ``pixel_space`` says that encode and decode are the identity (x0 is already
  in the model's space, so level 0 returns it untouched, without a model call).
* **conditioning** -- :meth:`DiffusionModel.encode_prompt` turns a prompt (and
  a negative prompt for classifier-free guidance) into ``(cond, uncond)``,
  opaque to the caller and handed back to ``predict`` unchanged.
* **the denoiser** -- :meth:`DiffusionModel.predict`, one call in one
  parameterisation, stated by ``schedule.prediction_type`` (eps, v, x0 or the
  flow velocity), which the schedulers consume as it is.
* **the training noise schedule as data** -- ``schedule``
  (:class:`boomerang.models.schedule.NoiseSchedule`: T, alpha_bar_t or flow
  sigmas, the prediction type), and :meth:`DiffusionModel.schedule_for` for
  schedules that depend on the image's size.

Families whose denoiser takes tokens (FLUX packs 2x2 latent patches, with
position ids) pack and unpack inside ``predict``: the model's space stays a
grid, so noise, schedulers, tiling and ILVR never see tokens (diffusers' FLUX
pipelines, too, draw their noise on the grid and pack it). A window of a tiled
image is passed to ``predict`` with its :class:`Region`, so that such a family
gives each token the position id it has in the whole image, and SDXL can take
its size conditioning from the whole image.

Adding a family means adding one module with one subclass of
:class:`DiffusionModel` (its ``find_layout``, ``describe`` and ``load_components`` class
methods, and the calls above) and naming it in
``boomerang.models.loading.FAMILIES``. This module is torch-free at import.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

from boomerang.models.invariant import INVARIANT_STRATEGIES, invariant_kernels, patchable, per_item

__all__ = ["ModelInfo", "Region", "DiffusionModel"]


@dataclass(frozen=True)
class ModelInfo:
    """What the CLI needs to know about a model before loading it (read from JSON configs).

    Attributes:
        source: the local folder (str) the model is read from.
        kind: ``'pixel'`` (denoiser on images) or ``'latent'`` (Stable Diffusion);
            written in metadata. Code that needs a property of the model asks for
            it (``pixel_space``, ``space_factor``, ...), never for the kind.
        num_train_timesteps: T of the model's training schedule.
        image_channels: channels of the images the model takes (1 or 3).
        native_size: pixel models with self-attention: the only side length
            (square images) the UNet was trained on; latent models and fully
            convolutional pixel models (``models.pixel.fully_convolutional``):
            ``None`` (any size that is a multiple of ``size_multiple``).
        size_multiple: what image sides must be multiples of when there is no
            ``native_size``: latent models: the VAE factor (8 for SD; times the
            patch size for token models); pixel models: the UNet's total
            downsampling factor (informational when it has a native size).
        takes_prompt: True for text-conditioned models.
        vae_width: latent models: channels of the VAE's full-size layers (its first
            ``block_out_channels``; 128 for SD), for memory estimates; pixel models: ``None``.
        family: the name of the family module that reads and loads the model
            (``'pixel'``, ``'stable_diffusion'``).
        pixel_space: encode and decode are the identity (the model denoises images).
        space_factor: image pixels per model-space pixel along a side (1 in pixel
            space; the VAE factor for latent models). Windows of a tiled image are
            cut in the model's space and scaled by this factor for the VAE.
        default_scheduler: the scheduler name used when none is asked for (``--scheduler auto``):
            the family's own (``'ddpm'`` for DDPM and Stable Diffusion 1.x/2.x, ``'euler'`` for SDXL
            and the flow-matching families).
    """

    source: str
    kind: str
    num_train_timesteps: int
    image_channels: int
    native_size: int | None
    size_multiple: int
    takes_prompt: bool
    vae_width: int | None = None
    family: str = ""
    pixel_space: bool = False
    space_factor: int = 1
    default_scheduler: str = "ddpm"


@dataclass(frozen=True)
class Region:
    """Where a window lies in the whole image, in model-space pixels.

    ``predict(x_in, t, ..., region=Region(top, left, height, width))`` says that
    x_in is the window [top : top + h, left : left + w] of a model-space image of
    ``height`` x ``width``; families that number their tokens by position (FLUX's
    image ids) or condition on the image's size (SDXL) use it; the others ignore it.
    """

    top: int
    left: int
    height: int
    width: int


class DiffusionModel:
    """A loaded model behind the denoiser contract (see the module docstring).

    Attributes (all families):
        info: the :class:`ModelInfo`; its fields are also attributes of the model
            (``kind``, ``num_train_timesteps``, ``image_channels``, ``native_size``,
            ``size_multiple``, ``takes_prompt``, ``pixel_space``, ``space_factor``, ``source``).
        scheduler_config: the model's diffusers scheduler config (dict).
        device: the ``torch.device`` the networks run on; dtype: ``'float32'``,
            ``'float16'`` or ``'bfloat16'``; weights_sha256: hash of the weight files read.
        unet_calls: denoiser calls so far (incremented by :meth:`predict`).
        cpu_offload: True after :meth:`enable_cpu_offload` (one network on the device at a time).
        batch_invariant, invariant_strategy: a sample never depends on its batch
            (:mod:`boomerang.models.invariant`): on the CPU by default, batched with
            invariant kernels (``'kernels'``); elsewhere only when asked, item by item
            (``'per_item'``).

    A family subclass sets the class attributes below and implements
    ``find_layout``, ``describe``, ``load_components`` (class methods used by
    :mod:`boomerang.models.loading`), :meth:`encode`, :meth:`decode`,
    :meth:`model_shape` and ``_denoise``; :meth:`encode_prompt` when it takes prompts.
    """

    #: The family's name (``ModelInfo.family``) and, for messages, what it loads.
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Attribute names of the family's networks (their weights are checked for NaN/inf in messages).
    networks: ClassVar[tuple[str, ...]] = ()
    #: Components whose weight files are checked (and hashed) before loading.
    components: ClassVar[tuple[str, ...]] = ("unet",)
    #: The attribute holding the denoiser network (patched with the invariant kernels), and its name in messages.
    denoiser: ClassVar[str] = "unet"
    denoiser_label: ClassVar[str] = "the UNet"
    #: Tiled windows are passed to ``predict`` one window at a time with their :class:`Region`
    #: (families that number tokens by position: FLUX); otherwise batched, without one.
    window_positions: ClassVar[bool] = False
    #: ``--scheduler lcm --schedule img2img``: the rule of the diffusers img2img pipeline that runs this
    #: family's Latent Consistency Models: ``'strength'`` (LatentConsistencyModelImg2ImgPipeline:
    #: ``set_timesteps(steps, strength=level)``) or ``'truncate'`` (StableDiffusionXLImg2ImgPipeline:
    #: ``set_timesteps(steps)``, then its last min(int(steps level), steps) timesteps).
    lcm_img2img_rule: ClassVar[str] = "strength"

    def __init__(self, info: ModelInfo, *, scheduler_config: dict, device, dtype: str, weights_sha256: str):
        self.info = info
        self.scheduler_config = dict(scheduler_config)
        self.device = device
        self.dtype = dtype
        self.weights_sha256 = weights_sha256
        self.unet_calls = 0  # incremented per denoiser call (tests, reports)
        on_cpu = getattr(device, "type", str(device)) == "cpu"
        self.batch_invariant = on_cpu
        self.invariant_strategy = "kernels" if on_cpu else "per_item"
        self._patches: dict[str, list] = {}
        self._schedule = None
        self._offload = None  # a models.offload.CPUOffload after enable_cpu_offload()

    # ------------------------------------------------------------------ loading (per family)

    @classmethod
    def find_layout(cls, root, index: dict | None) -> dict | None:
        """The paths of this family's components in folder ``root``, or None if it is not one of its
        folders. ``index``: the parsed ``model_index.json``, or None when the folder has none.
        Torch-free. Raises ValueError for a folder of this family that is incomplete."""
        raise NotImplementedError

    @classmethod
    def describe(cls, root, layout: dict) -> ModelInfo:
        """The :class:`ModelInfo` of the folder from its JSON configs only (torch-free)."""
        raise NotImplementedError

    @classmethod
    def load_components(cls, layout: dict, *, load_component, device, torch_dtype) -> dict[str, Any]:
        """The family's components, loaded with ``load_component(name, cls, **from_pretrained_kwargs)``
        (which refuses missing or unexpected weights), on ``device`` in eval mode: the keyword
        arguments of ``__init__`` besides the common ones."""
        raise NotImplementedError

    # ------------------------------------------------------------------ ModelInfo fields

    source = property(lambda self: self.info.source)
    kind = property(lambda self: self.info.kind)
    num_train_timesteps = property(lambda self: self.info.num_train_timesteps)
    image_channels = property(lambda self: self.info.image_channels)
    native_size = property(lambda self: self.info.native_size)
    size_multiple = property(lambda self: self.info.size_multiple)
    takes_prompt = property(lambda self: self.info.takes_prompt)
    pixel_space = property(lambda self: self.info.pixel_space)
    space_factor = property(lambda self: self.info.space_factor)
    default_scheduler = property(lambda self: self.info.default_scheduler)

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    # ------------------------------------------------------------------ the schedule

    @property
    def schedule(self):
        """The training noise schedule and the denoiser's parameterisation
        (:class:`boomerang.models.schedule.NoiseSchedule`, from ``scheduler_config``)."""
        if self._schedule is None:
            from boomerang.models.schedule import NoiseSchedule

            self._schedule = NoiseSchedule.from_config(self.scheduler_config)
        return self._schedule

    def schedule_for(self, image_shape) -> Any:
        """The schedule for images of ``image_shape`` ([C,] H, W): ``schedule`` itself, except for
        families whose schedule depends on the image's size (FLUX's dynamic shift)."""
        return self.schedule

    # ------------------------------------------------------------------ shapes

    def model_shape(self, image_shape) -> tuple[int, int, int]:
        """(c, h, w) of an image of shape (C, H, W) in the model's space.

        Raises:
            ValueError: sides that are not multiples of what the model takes.
        """
        raise NotImplementedError

    @property
    def learned_variance(self) -> bool:
        """True when the denoiser also predicts the variance (twice the model-space channels):
        only the ddpm scheduler can use its output."""
        return False

    @property
    def prediction_channels(self) -> int:
        """Channels of :meth:`predict`'s output (the model's space; twice that with learned variance)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the calls

    def encode(self, x, *, generators=None):
        """Images [B, C, H, W] in [-1, 1] -> the model's space (float32, on ``device``).

        ``generators`` (one per item): draw a sample of a stochastic encoder (the
        VAE posterior, as diffusers' img2img pipelines do) from each item's
        generator; families with a deterministic encoder ignore them and draw nothing.
        """
        raise NotImplementedError

    def decode(self, z):
        """The model's space -> images [B, C, H, W] float32 on the CPU (not clamped)."""
        raise NotImplementedError

    def encode_prompt(self, prompt: str = "", negative_prompt: str = "", guidance_scale: float = 1.0):
        """``(cond, uncond)`` for :meth:`predict`: opaque per family; ``uncond`` is None when no
        unconditional pass is made. Models without text conditioning return ``(None, None)``."""
        return None, None

    def predict(self, x_in, t, *, cond=None, uncond=None, guidance_scale: float = 1.0, region: Region | None = None):
        """The denoiser's output for a batch, in ``schedule.prediction_type``.

        Args:
            x_in: [B, c, h, w] model input (after ``scheduler.scale_model_input``).
            t: the scheduler's timestep (int or 0-d tensor), the same for the batch.
            cond, uncond: from :meth:`encode_prompt`.
            guidance_scale: classifier-free guidance w; with ``uncond`` the output is
                ``u + w (c - u)``; ``w <= 1`` or no ``uncond``: one conditional pass.
            region: where x_in lies in the whole image (tiled windows); None: x_in is the whole image.

        Returns: float32 tensor [B, prediction_channels, h, w].

        Raises:
            NonFiniteOutputError: the denoiser returned NaN/inf (the message names the dtype).
        """
        import torch

        from boomerang.models.errors import NonFiniteOutputError, nonfinite_message

        self.unet_calls += 1
        x = x_in.to(self.device, self.torch_dtype)
        with self._resident(self.denoiser):
            if self._per_item_mode() and x.shape[0] > 1:
                out = per_item(self._denoise, x, t, cond, uncond, guidance_scale, region)
            else:
                with self._invariant(self.denoiser):
                    out = self._denoise(x, t, cond, uncond, guidance_scale, region)
        if not bool(torch.isfinite(out).all()):
            raise NonFiniteOutputError(nonfinite_message(self, self.denoiser_label))
        return out

    def _denoise(self, x, t, cond, uncond, guidance_scale, region):
        """The family's denoiser on x (already on the device, in the model's dtype); float32 out."""
        raise NotImplementedError

    # ------------------------------------------------------------------ model CPU offload

    @property
    def cpu_offload(self) -> bool:
        return self._offload is not None

    def enable_cpu_offload(self, device=None, storage="cpu") -> None:
        """Model CPU offload (:mod:`boomerang.models.offload`): keep every network of ``networks`` in
        ``storage`` memory and move each to ``device`` (default ``self.device``, the execution device)
        only while it runs, one at a time (diffusers' ``enable_model_cpu_offload``). ``load_model(...,
        cpu_offload=True)`` calls it on CUDA; on the CPU it moves nothing (the tests use that)."""
        from boomerang.models.offload import CPUOffload

        self._offload = CPUOffload({name: getattr(self, name, None) for name in self.networks},
                                   self.device if device is None else device, storage)

    def _resident(self, name: str):
        """The context to run network ``name`` in: on the execution device under CPU offload, else nothing."""
        if self._offload is None or name not in self._offload.networks:
            return contextlib.nullcontext()
        return self._offload.use(name)

    # ------------------------------------------------------------------ batch invariance

    def _invariant(self, component: str):
        """The context to run ``component`` (e.g. 'unet') in: invariant kernels or nothing."""
        if not self._kernels_mode():
            return contextlib.nullcontext()
        if component not in self._patches:
            self._patches[component] = patchable([getattr(self, component)])
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
