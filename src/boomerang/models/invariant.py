"""Batch-invariant kernels (part of :mod:`boomerang.models`): the same sample whatever the batch."""

from __future__ import annotations

from typing import Any

__all__ = ["INVARIANT_STRATEGIES", "invariant_kernels", "patchable", "per_item", "linear_rows", "conv_items",
           "group_norm_contiguous"]

# ----------------------------------------------------------------------------- batch invariance
#
# The project promises that, in float32 on the CPU, a sample depends only on its
# own generator: the same seed gives bit-identical pixels whatever the batch size
# and order. PyTorch's fastest CPU kernels break this, because they choose an
# algorithm (and so a float summation order) by batch size. Measured on this
# project's machine with torch 2.13 (benchmarks/batch_invariance.py prints it;
# the first module whose output changed is named):
#
# * ``nn.Linear`` on a 2-D input [B, C] (the timestep embedding and every ResNet's
#   ``time_emb_proj``): MKL gemv for B = 1, gemm for B > 1.
# * Convolutions: oneDNN picks its blocking by batch size, NNPACK takes over from
#   batch 16 on, and the native kernels fold the batch into one gemm for the
#   channels-last strided tensors that diffusers' attention blocks return.
# * GroupNorm on such channels-last strided inputs splits its reduction by batch size.
#
# What the networks do instead, when ``batch_invariant`` (the CPU default,
# ``invariant_strategy = 'kernels'``), inside :class:`invariant_kernels`:
#
# * the UNet runs batched, but every ``nn.Conv2d`` runs on each item as a batch
#   of one (contiguous), so whatever kernel torch picks, it picks the same one
#   for every item whatever the batch: invariant by construction. Convolutions
#   are most of the work and oneDNN is fast at batch one, so little is lost;
# * every ``nn.Linear`` is a batched matrix product over the leading (batch)
#   dimension: ``torch.bmm`` of [B, L, C] by the weight expanded to [B, C, D]
#   (2-D inputs as L = 1), each item its own L x C by C x D product;
# * ``nn.GroupNorm`` inputs are made contiguous (the native kernel then reduces
#   each (item, group) on its own);
# * everything else these UNets use was measured invariant as it is:
#   scaled-dot-product attention (per item and head), SiLU, interpolation,
#   element-wise arithmetic;
# * the VAE (latent models) runs item by item: at 256x256 and up its batched
#   activations no longer fit in cache, and item by item was the fastest way
#   measured, invariant or not.
#
# Measured alternatives (BENCHMARKS.md, bundled architecture): running the whole
# UNet item by item (the earlier design) gave 1.3-1.5x lower throughput than this
# at batch 4-64; disabling oneDNN/NNPACK globally so that the native convolution
# loops over the batch was also invariant but slower still at batch 64 and about 3-5x
# slower for the VAE; plain batching (not invariant) is ~1.3x faster than this
# for the small pixel UNet and about equal for the Stable-Diffusion-shaped one.
#
# The patches live on the modules' instances only for the duration of one call
# (a diffusers pipeline sharing the modules is unaffected); no global switch is
# touched. ``model.batch_invariant = False`` turns this off (default kernels, plain
# batching; samples then differ in the last bits across batch sizes).
# ``invariant_strategy = 'per_item'`` runs every network item by item (the
# fallback, and what ``batch_invariant = True`` means on CUDA, where the default
# is off: cuDNN offers no batch-invariant switch). tests/core/test_core.py checks
# bit-exactness at batch sizes 1, 2, 3, 5, 7, 8, 16 and in reversed order for a
# pixel UNet with attention and a Stable Diffusion model (cross attention, VAE,
# guidance, img2img posterior samples).

INVARIANT_STRATEGIES = ("kernels", "per_item")


def per_item(fn, x, *args, **kwargs):
    """fn applied to each item of x as a fresh batch of one, results concatenated."""
    import torch

    return torch.cat([fn(x[i : i + 1].clone(), *args, **kwargs) for i in range(x.shape[0])])


def linear_rows(self, x):
    """nn.Linear as bmm over the leading dimension: no item's result depends on the others.

    x: [B, ..., C_in] -> [B, ..., C_out].
    """
    import torch

    lead = x.shape[:-1]
    x3 = x.reshape(x.shape[0], -1, x.shape[-1]) if x.dim() != 2 else x.unsqueeze(1)
    w = self.weight.t().unsqueeze(0).expand(x3.shape[0], -1, -1)
    y = torch.bmm(x3, w)
    if self.bias is not None:
        y = y + self.bias
    return y.reshape(*lead, y.shape[-1])


def conv_items(self, x):
    """nn.Conv2d on each item as a contiguous batch of one. x: [B, C, H, W]."""
    import torch

    if x.dim() != 4 or x.shape[0] == 1:
        return self._conv_forward(x.contiguous(), self.weight, self.bias)
    return torch.cat([self._conv_forward(x[i : i + 1].contiguous(), self.weight, self.bias) for i in range(x.shape[0])])


def group_norm_contiguous(self, x):
    """nn.GroupNorm on a contiguous copy of x (the native kernel then reduces each (item, group) alone)."""
    import torch.nn.functional as F

    return F.group_norm(x.contiguous(), self.num_groups, self.weight, self.bias, self.eps)


def patchable(modules) -> list[tuple[Any, Any]]:
    """(module, replacement forward) for every Linear / Conv2d / GroupNorm in ``modules``.

    Only the exact torch classes are patched (subclasses such as LoRA layers keep
    their own forward; the invariance tests would catch one that is variant).
    """
    import torch.nn as nn

    out = []
    for root in modules:
        for m in root.modules():
            if type(m) is nn.Linear:
                out.append((m, linear_rows))
            elif type(m) is nn.Conv2d and m.padding_mode == "zeros":
                out.append((m, conv_items))
            elif type(m) is nn.GroupNorm:
                out.append((m, group_norm_contiguous))
    return out


class invariant_kernels:
    """Context manager: run the patched modules with batch-invariant forwards (see above).

    Args:
        patches: ``(module, forward)`` pairs from :func:`patchable` (cached by
            :class:`boomerang.models.DiffusionModel`).

    Each module's ``forward`` is replaced on the instance inside the block and
    restored on exit, also after an exception. Not re-entrant for the same
    modules from two threads at once.
    """

    def __init__(self, patches):
        self.patches = patches

    def __enter__(self):
        for m, fwd in self.patches:
            m.__dict__["forward"] = fwd.__get__(m)
        return self

    def __exit__(self, *exc):
        for m, _ in self.patches:
            m.__dict__.pop("forward", None)
        return False
