"""Model CPU offload (part of :mod:`boomerang.models`): one network on the accelerator at a time.

The counterpart of diffusers' ``enable_model_cpu_offload`` (which chains
accelerate's ``cpu_offload_with_hook`` over the pipeline's
``model_cpu_offload_seq``) on the denoiser contract: every network of a model
(text encoders, denoiser, VAE) is kept in CPU memory and moved whole to the
execution device just before it runs, and the network that ran before it goes
back to the CPU. Peak accelerator memory is then the largest network plus its
activations instead of all of them (for FLUX.1-dev in bfloat16: the 12 B
transformer, about 24 GB, instead of transformer + T5-XXL + CLIP + VAE, about
34 GB). A network stays resident until another one is needed, so a job's
consecutive denoiser calls move nothing.

The model's code names the network it is about to run (``with
model._resident('unet'):``) at each place it runs one: ``encode`` / ``decode``
(the VAE), ``encode_prompt`` (each text encoder) and ``predict`` (the
denoiser); that is the whole of the mechanism. Inputs are already on
``model.device`` (the execution device). Only the weights move, so a sample is
the same with and without offload on the same device and dtype.

Not measured here: no CUDA GPU was available to this project (README, "GPU
memory"); the tests check the plumbing and the order of residency on the CPU.
Torch-free at import.
"""

from __future__ import annotations

import contextlib

__all__ = ["CPUOffload", "OFFLOAD_NEEDS_CUDA"]

#: The one-line refusal of ``cpu_offload`` where no CUDA GPU is used or available.
OFFLOAD_NEEDS_CUDA = ("`cpu_offload` (model CPU offload) keeps every network in CPU memory and moves each one to a "
                      "CUDA GPU only while it runs, so it needs `device` cuda (or cuda:N) on a machine with a CUDA GPU")


class CPUOffload:
    """Keep ``networks`` in ``storage`` memory; :meth:`use` moves one of them to ``device``.

    Args:
        networks: ``{name: torch.nn.Module}`` (None values are left out: an SDXL refiner's
            missing ``text_encoder``, an SD3 folder without T5).
        device: the execution device (``model.device``; ``cuda`` in use, ``cpu`` in the tests).
        storage: where a network waits while another one runs (``'cpu'``).

    Attributes:
        resident: the name of the network now on ``device`` (None before the first use).
        moves: the names in the order they were moved to ``device`` (a record for tests and reports).
    """

    def __init__(self, networks: dict, device, storage="cpu"):
        self.networks = {name: net for name, net in networks.items() if net is not None}
        self.device = device
        self.storage = storage
        self.resident: str | None = None
        self.moves: list[str] = []
        for net in self.networks.values():
            net.to(storage)

    @contextlib.contextmanager
    def use(self, name: str):
        """Context: network ``name`` on the execution device (the previously resident one back in storage).

        Raises:
            KeyError: ``name`` is not one of the networks.
        """
        net = self.networks[name]
        if self.resident != name:
            if self.resident is not None:
                self.networks[self.resident].to(self.storage)
            net.to(self.device)
            self.resident = name
            self.moves.append(name)
        yield net

    def release(self) -> None:
        """Every network back in storage (nothing resident)."""
        if self.resident is not None:
            self.networks[self.resident].to(self.storage)
            self.resident = None
