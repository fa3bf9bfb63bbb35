"""The designs of the studies in ``benchmarks/`` whose figures README.md and docs/ quote; not for users.

A study's script (``benchmarks/<study>.py``) parses its flags, runs the study, writes its
results and draws its figures. What the figures rest on and the tests check lives here,
so that tests import it from the package and never a benchmark script:

* :mod:`boomerang.studies.augmentation`: the low-data subsets of ``benchmarks/augmentation.py``,
  its classical augmentation and its ``global`` arm's mixing of generated images.
* :mod:`boomerang.studies.privacy_utility`: the text arm of ``benchmarks/privacy_utility.py``
  (captioned sources, the ``boomerang anonymise`` command, reading the release back) and
  the rule that lets a run reuse an earlier run's unconditional arm.

The statistics they report are in :mod:`boomerang.stats`.
"""
