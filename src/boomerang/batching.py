"""Batch sizes: the automatic, memory-aware choice (torch-free until asked for CUDA memory).

Batch size never changes a sample (one generator per sample, batch-invariant
kernels on the CPU); it only trades memory for speed. Measured in
benchmarks/batching.py (BENCHMARKS.md).
"""

from __future__ import annotations

__all__ = [
    "AUTO_BATCH_MAX",
    "AUTO_BATCH_MAX_CUDA",
    "AUTO_BATCH_MEMORY_FRACTION",
    "available_memory_bytes",
    "estimate_item_bytes",
    "auto_batch_size",
    "resolve_batch_size",
]

#: Automatic batch size: at most this many samples per core call on the CPU. Measured
#: (benchmarks/batching.py, BENCHMARKS.md): throughput on the CPU rises up to batch
#: 4-16 and is flat or falling beyond, while memory grows with the batch.
AUTO_BATCH_MAX = 16
#: ... and on CUDA, where larger batches keep the GPU busy.
AUTO_BATCH_MAX_CUDA = 64
#: Fraction of the available memory the automatic batch may plan to use.
AUTO_BATCH_MEMORY_FRACTION = 0.5


def available_memory_bytes(device: str = "cpu") -> int | None:
    """Free memory for tensors on ``device``: CUDA free memory, or the CPU's
    ``MemAvailable`` (Linux ``/proc/meminfo``); None when unknown."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def estimate_item_bytes(model, shape: tuple[int, int, int]) -> int:
    """Rough peak activation memory (bytes) of one item in one denoiser call.

    Args:
        model: a loaded model (``unet.config`` is read) or None (a generic guess).
        shape: (C, H, W) of the image the model gets (pixels, before the VAE).

    The UNet keeps every down-block output for its skip connections and works
    on a few tensors of the largest level at a time; attention levels add a
    heads x L x L score matrix. Sum: bytes x (3 x sum of level sizes x
    (layers_per_block + 1) + 4 x the largest level + attention), doubled for
    classifier-free guidance on text models, times a safety factor of 2.
    """
    c, h, w = (int(v) for v in shape)
    cfg = getattr(getattr(model, "unet", None), "config", None)
    if cfg is None:
        return 64 * c * h * w * 4
    f = int(getattr(model, "space_factor", 1) or 1)
    h, w = max(1, h // f), max(1, w // f)
    chans = list(cfg.get("block_out_channels", (64,)))
    layers = int(cfg.get("layers_per_block", 1) or 1)
    types = list(cfg.get("down_block_types", ()))
    head_dim = cfg.get("attention_head_dim") or 8
    sizes, attn = [], 0
    for i, ch in enumerate(chans):
        hw = max(1, h >> i) * max(1, w >> i)
        sizes.append(ch * hw)
        if i < len(types) and "Attn" in str(types[i]):
            heads = max(1, ch // int(head_dim if isinstance(head_dim, int) else head_dim[0]))
            attn = max(attn, heads * hw * hw)
    attn = max(attn, max(1, chans[-1] // 8) * (max(1, h >> (len(chans) - 1)) * max(1, w >> (len(chans) - 1))) ** 2)
    elem = 2 if str(getattr(model, "dtype", "float32")) in ("float16", "bfloat16") else 4
    per = elem * (3 * (layers + 1) * sum(sizes) + 4 * max(sizes) + attn)
    if getattr(model, "takes_prompt", False):
        per *= 2
    return int(2 * per)


def auto_batch_size(num_items: int, device: str = "cpu", model=None, shape: tuple[int, int, int] | None = None,
                    available_bytes: int | None = None) -> int:
    """The batch size used when none is given: memory-aware and capped.

    ``min(num_items, cap, fit)``: cap = :data:`AUTO_BATCH_MAX` on the CPU
    (:data:`AUTO_BATCH_MAX_CUDA` on CUDA); fit = how many items of
    :func:`estimate_item_bytes` fit in :data:`AUTO_BATCH_MEMORY_FRACTION` of
    the available memory (``available_bytes``, default
    :func:`available_memory_bytes`); at least 1. Without ``model`` and ``shape``
    only the cap applies.

    Batch size never changes a sample (one generator per sample, batch-invariant
    kernels on the CPU); it only trades memory for speed.
    """
    cap = AUTO_BATCH_MAX_CUDA if str(device).startswith("cuda") else AUTO_BATCH_MAX
    batch = max(1, min(int(num_items), cap))
    if model is not None and shape is not None:
        free = available_bytes if available_bytes is not None else available_memory_bytes(device)
        if free is not None:
            fit = int(free * AUTO_BATCH_MEMORY_FRACTION) // max(1, estimate_item_bytes(model, shape))
            batch = max(1, min(batch, fit))
    return batch


def resolve_batch_size(job) -> int:
    """The batch size of a job whose inputs were checked up front (``boomerang sample``, the API):
    ``settings.batch_size`` or :func:`auto_batch_size` of (inputs x samples) for its largest
    model input (the model must be loaded); ``job`` is a ``boomerang.tasks.job.Job``."""
    s = job.settings
    if s.batch_size:
        return int(s.batch_size)
    shape = None
    if job.model is not None and job.inputs:
        hh, ww, cc = max((inp.model_shape for inp in job.inputs), key=lambda sh: sh[0] * sh[1])
        shape = (int(cc), int(hh), int(ww))
    return auto_batch_size(len(job.inputs) * s.num_samples, s.device, job.model, shape)
