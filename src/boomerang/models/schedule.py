"""A model's training noise schedule, as data (part of the denoiser contract, :mod:`boomerang.models`).

Two kinds of forward process are described:

* ``'vp'`` (variance preserving: DDPM, Stable Diffusion 1.x/2.x, SDXL, LCM):
  x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t = 0..T-1
  (Ho et al. 2020, eq. 4), alpha_bar_t = prod_{s <= t} (1 - beta_s);
* ``'flow'`` (rectified flow / flow matching: SD3, FLUX):
  x_t = (1 - sigma_t) x0 + sigma_t eps, the model predicting the velocity
  eps - x0; sigma_t may be shifted (the config's ``shift``) and, with dynamic
  shifting, depend on the image's size.

The numbers are diffusers' own (the float32 values its schedulers compute from
the model's scheduler config, as Python floats), so that a plan made from this
data and the scheduler that executes it agree exactly. Torch-free at import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["NoiseSchedule", "PREDICTION_TYPES", "SCHEDULE_KINDS"]

#: What a denoiser call returns: eps; v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0
#: (Salimans & Ho 2022); x0 itself; or the flow velocity eps - x0.
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow")
SCHEDULE_KINDS = ("vp", "flow")


@dataclass(frozen=True)
class NoiseSchedule:
    """The training noise schedule of a model and the parameterisation of its denoiser.

    Attributes:
        kind: ``'vp'`` or ``'flow'`` (see the module docstring).
        num_train_timesteps: T; the training steps are t = 0..T-1.
        prediction_type: what :meth:`DiffusionModel.predict` returns, one of
            :data:`PREDICTION_TYPES` (the scheduler config's ``prediction_type``
            for vp models; ``'flow'`` for flow models).
        alphas_cumprod: vp: alpha_bar_t for t = 0..T-1 (length T, decreasing in
            (0, 1]); flow: None.
        sigmas: flow: sigma of each training step, increasing: ``sigmas[k]`` for
            s = (k + 1) / T, after the static ``shift`` (diffusers'
            ``FlowMatchEulerDiscreteScheduler.sigmas`` in reverse); unshifted
            when ``dynamic_shift`` (the size-dependent shift is applied by the
            model's ``schedule_for``); vp: None.
        shift: flow: the config's static shift (1.0: none); vp: None.
        dynamic_shift: flow: sigma also depends on the image's size (FLUX's mu
            from the image's token count): ask the model's ``schedule_for(image_shape)``.
        config: the scheduler config (a dict copy) these numbers were computed from.
        mu: after a size-dependent shift (:meth:`with_sigmas`): the shift parameter used; else None.
    """

    kind: str
    num_train_timesteps: int
    prediction_type: str
    alphas_cumprod: tuple[float, ...] | None = None
    sigmas: tuple[float, ...] | None = None
    shift: float | None = None
    dynamic_shift: bool = False
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    mu: float | None = None

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"kind must be one of {SCHEDULE_KINDS}, got {self.kind!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        values = self.alphas_cumprod if self.kind == "vp" else self.sigmas
        if values is None or len(values) != self.num_train_timesteps:
            what = "alphas_cumprod" if self.kind == "vp" else "sigmas"
            raise ValueError(f"a {self.kind} schedule needs {what} of length T = {self.num_train_timesteps}")

    # ------------------------------------------------------------------ reading a config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NoiseSchedule:
        """The schedule a diffusers scheduler config describes (imports diffusers).

        ``FlowMatch*`` scheduler classes give a flow schedule, every other class a
        vp one, computed as diffusers' ``DDPMScheduler`` computes it from the
        same config (betas, ``beta_schedule``, ``rescale_betas_zero_snr``, ...):
        the same alpha_bar_t that :func:`boomerang.schedulers.make_scheduler`'s
        schedulers use.

        Raises:
            ValueError: an unknown ``prediction_type``.
        """
        config = dict(config)
        T = int(config.get("num_train_timesteps", 1000))
        if str(config.get("_class_name", "")).startswith("FlowMatch"):
            from diffusers import FlowMatchEulerDiscreteScheduler

            # without "_use_default_values" (a config copied from a live scheduler has it): its values count
            sched = FlowMatchEulerDiscreteScheduler.from_config({k: v for k, v in config.items()
                                                                 if k != "_use_default_values"})
            return cls("flow", T, "flow", sigmas=tuple(float(s) for s in reversed(sched.sigmas.tolist())),
                       shift=float(config.get("shift", 1.0)), dynamic_shift=bool(config.get("use_dynamic_shifting")),
                       config=config)
        from boomerang.schedulers import make_scheduler

        alphas = make_scheduler("ddpm", config).alphas_cumprod
        return cls("vp", T, str(config.get("prediction_type", "epsilon")),
                   alphas_cumprod=tuple(float(a) for a in alphas.tolist()), config=config)

    # ------------------------------------------------------------------ per training step

    def alpha_bar(self, t: int) -> float:
        """alpha_bar_t, the signal's share of the variance at training step ``t`` (flow:
        (1 - sigma)^2 / ((1 - sigma)^2 + sigma^2), the vp model of the same SNR)."""
        if self.kind == "vp":
            return self.alphas_cumprod[int(t)]
        snr = self.snr(t)
        return snr / (1.0 + snr)

    def sigma(self, t: int) -> float:
        """The noise's coefficient in x_t: flow: sigma_t; vp: sqrt(1 - alpha_bar_t)."""
        if self.kind == "flow":
            return self.sigmas[int(t)]
        return math.sqrt(1.0 - self.alphas_cumprod[int(t)])

    def snr(self, t: int) -> float:
        """Signal-to-noise ratio of x_t at training step ``t``: vp alpha_bar / (1 - alpha_bar),
        flow ((1 - sigma) / sigma)^2 (Kingma et al. 2021); comparable across families."""
        if self.kind == "vp":
            ab = self.alphas_cumprod[int(t)]
            return ab / (1.0 - ab) if ab < 1.0 else math.inf
        s = self.sigmas[int(t)]
        return ((1.0 - s) / s) ** 2 if s > 0 else math.inf

    def x0_from(self, output, x_t, t: int):
        """The denoiser's estimate of x0 from its ``output`` in this schedule's parameterisation.

        Args:
            output: what ``predict`` returned for ``x_t`` (tensor or float).
            x_t: the noisy input at training step ``t`` (in the forward process's
                own scale, not ``scale_model_input``'s).
            t: the training step (an index into ``alphas_cumprod`` / ``sigmas``).

        Returns:
            epsilon: (x_t - sqrt(1 - a) eps) / sqrt(a); v_prediction: sqrt(a) x_t - sqrt(1 - a) v;
            sample: the output; flow: x_t - sigma v (a = alpha_bar_t).
        """
        if self.prediction_type == "sample":
            return output
        if self.prediction_type == "flow":
            return x_t - self.sigmas[int(t)] * output
        a = self.alphas_cumprod[int(t)]
        if self.prediction_type == "epsilon":
            return (x_t - math.sqrt(1.0 - a) * output) / math.sqrt(a)
        return math.sqrt(a) * x_t - math.sqrt(1.0 - a) * output

    def with_sigmas(self, sigmas, mu: float | None = None) -> NoiseSchedule:
        """A copy with other flow sigmas (a size-dependent shift ``mu`` applied); raises ValueError for vp."""
        if self.kind != "flow":
            raise ValueError("only a flow schedule has sigmas to replace")
        return replace(self, sigmas=tuple(float(s) for s in sigmas), dynamic_shift=False, mu=mu)
