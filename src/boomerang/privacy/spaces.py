"""The names of the attack's built-in feature spaces (torch-free; see :mod:`boomerang.privacy.features`)."""

#: Built-in feature spaces of the linkage attack: raw pixels, SSIM, the reference classifier's embedding.
FEATURE_SPACES: tuple[str, ...] = ("pixels", "ssim", "classifier")
