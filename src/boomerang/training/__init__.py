"""Training: one loop skeleton shared by ``train``, ``train-ldm``, ``train-flow`` and ``train-classifier``.

The skeleton (what every training command does the same way):

- :mod:`~boomerang.training.loop`: the optimisation loop of one stage
  (:func:`~boomerang.training.loop.run_stage`: learning-rate warm-up or schedule,
  gradient clipping, the EMA update, checkpoints every N steps and at the end) and
  :class:`~boomerang.training.loop.Stopper`: SIGINT / SIGTERM (through
  :mod:`boomerang.stopping`) and ``--max-minutes`` end a run after the current step;
- :mod:`~boomerang.training.ema`: the exponential moving average of the weights;
- :mod:`~boomerang.training.checkpoint`: one atomic safetensors checkpoint (model, EMA,
  optimizer, step, RNG state) and the checks that make ``--resume`` exact;
- :mod:`~boomerang.training.progress`: the progress bar or lines, and library chatter silenced;
- :mod:`~boomerang.training.data`: the seeded batch order and the train/val/test split on disk;
- :mod:`~boomerang.training.config`: the flag checks and run records all commands share.

Each model's specifics live in their own module: :mod:`~boomerang.training.ddpm` (pixel DDPM,
``boomerang train``), :mod:`~boomerang.training.ldm` (the two-stage latent diffusion model,
``boomerang train-ldm``), :mod:`~boomerang.training.flow` (the SD3-shaped flow-matching model,
``boomerang train-flow``; its parts in :mod:`~boomerang.training.flow_parts`) and
:mod:`~boomerang.training.classifier` (the reference digit CNN's
recipe, ``boomerang train-classifier``; the network itself is :mod:`boomerang.classifier`).
The latent model's parts (VAE, text encoder, tokenizer and UNet builders, the digit captions)
are in :mod:`~boomerang.training.ldm_parts`. :mod:`~boomerang.training.commands` registers the four commands' flags (torch-free).

Importing this package imports no torch: the heavy imports happen inside functions.
"""
