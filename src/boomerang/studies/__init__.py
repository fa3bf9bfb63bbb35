"""The designs of the studies in ``benchmarks/`` whose figures README.md and docs/ quote; not for users.

A study's script (``benchmarks/<study>.py``) parses its flags, runs the study, writes its
results and draws its figures. What the figures rest on and the tests check lives here,
so that tests import it from the package and never a benchmark script:

* :mod:`boomerang.studies.judges`: the two judges of a digit's class every digit study reports
  (the reference CNN and an RBF SVM on HOG features trained on the same training split), with one
  interface ``judge(images) -> labels`` and :func:`~boomerang.studies.judges.retention`.
* :mod:`boomerang.studies.augmentation`: the low-data subsets of ``benchmarks/augmentation.py``,
  its classical augmentation, its ``global`` arm's mixing of generated images, and the class
  retention of its samples by both judges.
* :mod:`boomerang.studies.privacy_utility`: the text arm of ``benchmarks/privacy_utility.py``
  (captioned sources, the ``boomerang anonymise`` command, reading the release back) and
  the rule that lets a run reuse an earlier run's unconditional arm.
* :mod:`boomerang.studies.families`: the three bundled digit models side by side
  (``benchmarks/families_levels.py``) and the flow model's text to image
  (``benchmarks/flow_model_quality.py``): per-item prompts in one batch, every model's output as
  the 28x28 digit the judges see, SSIM to the input and diversity between samples.

The statistics they report are in :mod:`boomerang.stats`.
"""
