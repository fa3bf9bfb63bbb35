"""``anonymise`` on WebDataset / Parquet shards: the release's shards (torch-free).

An anonymised release must not keep the input's grouping or order: which outputs share a
shard, and in what order, would otherwise tie each output to its input shard and position.
So the outputs are sorted by their opaque names (HMAC-SHA256 under the job's secret key:
:func:`boomerang.privacy.names.opaque_name`), cut into as many shards as the input had, and
the shards named by HMACs of their rank (:func:`boomerang.tasks.shard_writer.secret_order_shards`).
Each member carries its published metadata row (``.json``: file name, the item's carried
columns, level, timestep, sample index; never the source or the seed) and its label / caption
(``.cls`` / ``.txt``). Every shard gets the same modification time at the end.

The links (``--link-file``, written outside OUT) name each output as
``<output shard>/<member key>.png`` with the input's key as ``source`` and its input shard as
``source_shard``; ``OUT/.job`` (job key, journal, report) links outputs to sources as for
folders: never publish it. ``--keep-names`` mirrors the input shards instead.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["shard_plan", "finish_shards"]


def _public(row: dict) -> dict:
    from boomerang.privacy.verify import PRIVATE_KEY

    return {k: v for k, v in row.items() if k != PRIVATE_KEY}


def shard_plan(job, records):
    """The release's output shards (``Task.shard_plan`` of ``anonymise``)."""
    from boomerang.tasks.journal import JOB_DIR
    from boomerang.tasks.shard_writer import mirror_shards, secret_order_shards

    if job.options.keep_names:
        return mirror_shards(job, records, public=_public)
    return secret_order_shards(job, records, job.options.key, scratch=job.out / JOB_DIR, public=_public)


def _links(job, records):
    """``(source, level index, sample, Link)`` of every output of a sharded release."""
    from boomerang.privacy.links import Link
    from boomerang.tasks.shard_writer import member_stem

    for name, contents in shard_plan(job, records):
        for member, o, row in contents:
            if row is None:
                continue
            extra = {"source_shard": o.item.shard}
            if len(job.noise_levels) > 1:
                extra["level"] = job.noise_levels[o.level_index][0]
            if job.settings.num_samples > 1:
                extra["sample"] = o.sample
            yield o.item.relpath, o.level_index, o.sample, Link(o.item.relpath, f"{name}/{member_stem(member)}.png",
                                                                extra)


def finish_shards(task, job, records, skipped) -> None:
    """Write the release's shards (atomically, resumable), give them one modification time, and
    write the link file when asked."""
    from boomerang.privacy.links import write_links
    from boomerang.tasks.base import Task
    from boomerang.tasks.journal import JOB_DIR
    from boomerang.tasks.streams import external_sorted

    Task.finish(task, job, records, skipped)  # the shards of task.shard_plan
    now = time.time()
    for name, _ in shard_plan(job, None):
        try:
            os.utime(job.out / name, (now, now))
        except OSError:
            pass
    link_file = job.options.link_file
    if link_file:
        links = external_sorted(_links(job, records), key=lambda t: t[:3], folder=job.out / JOB_DIR)
        write_links(link_file, (ln for *_, ln in links), unique_outputs=True)
        print(f"boomerang anonymise: wrote {len(records)} links to {link_file}: keep it private, it undoes the "
              "anonymisation", file=sys.stderr)
    if not job.options.keep_names:
        print(f"boomerang anonymise: {job.out / '.job'} links outputs to sources (job key, journal, report): "
              "leave it out when you share the outputs", file=sys.stderr)
