"""``boomerang anonymise``: replace every image of a dataset by Boomerang samples near it.

The paper's first application (Luzi et al., Sec. 4.1): a "privacy-preserving"
copy of a dataset whose anonymity is set by the noise level. One task on the
shared runner (:mod:`boomerang.tasks.runner`: resume, skipped files,
``report.json``, ``--engine ray``). What it adds:

* **Opaque names** (default): ``OUT/<hex>.png``, or ``OUT/<label>/<hex>.png``
  for class folders, where ``<hex>`` is 20 hex digits of
  HMAC-SHA256(job key, relpath, level, sample). ``--keep-names`` mirrors the
  input names instead.
* **A secret job key.** 32 random bytes drawn when the job starts and kept in
  the job folder (``OUT/.job/job.json``, so a rerun continues with the same
  names and samples). It also seeds every sample: a public ``--seed`` alone
  would let anyone with the real images regenerate each output exactly and
  match it byte for byte. The job folder, like the journal next to it, links
  outputs to sources: never publish ``OUT/.job``.
* **Metadata without links**: ``metadata.jsonl`` (or ``.csv`` as the input
  had) carries ``file_name``, the item's label / caption / other columns,
  level, timestep and sample index, rows sorted by output name; no source
  path and no seed (with ``--keep-names`` the source is recorded). Every
  output gets the same modification time at the end, so the order in which
  the files were written (the sorted input order) cannot be read from them.
* **Per-item prompts** for text models: ``--prompt-template "a photo of a
  {label}"`` (fields: ``label``, ``caption`` and any carried column).
* **The link file** (``--link-file PATH``, JSONL, see
  :mod:`boomerang.privacy.links`) only when asked, written when the job
  finishes, refused inside OUT_DIR or IN_DIR (and refused up front, before any
  work, where it cannot be written): it undoes the anonymisation.
  ``boomerang audit-privacy IN_DIR OUT_DIR --link-file PATH`` measures it.
* **A private report.** ``report.json`` names input files (the skipped ones), so
  it goes to ``OUT/.job/report.json``: everything outside ``OUT/.job`` is the
  release and names no input.
* **Per-item verification** (``--verify-top K``, :mod:`boomerang.privacy.verify`):
  every output is attacked against IN_DIR (and ``--reference-pool``) as
  ``audit-privacy`` would; one whose source ranks within the top K is redrawn
  along a fixed ladder or withheld. Counts in the report, per-item detail in
  ``OUT/.job/verification.json``; the published record keeps the level asked.
* **The signal kept**: the report gives sqrt(alpha_bar_t) of each level's plan.

Not differential privacy: see docs/privacy.md for what the level does and does
not protect.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from boomerang.errors import SettingError
from boomerang.privacy.verify import PRIVATE_KEY
from boomerang.tasks.base import Task
from boomerang.tasks.job import Job, OutputFile

__all__ = ["AnonymiseTask", "AnonymiseOptions", "opaque_name", "secret_seed"]

from boomerang.privacy.names import NAME_HEX, opaque_name, secret_seed  # noqa: E402,F401 (re-exported)
from boomerang.tasks.anonymise_options import (  # noqa: E402  (AnonymiseOptions re-exported)
    AnonymiseOptions, _check_not_the_inputs, _inside, _template_fields)


@dataclass
class AnonymiseState:
    """Per-job state of ``anonymise``: the verifier (built when the first block is verified), the
    plans of the redraw ladder, and what verification did to each output (private)."""

    verifier: object = None
    rung_plans: dict = field(default_factory=dict)
    verified: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)


class AnonymiseTask(Task):
    """``boomerang anonymise IN_DIR --level L --out OUT_DIR [--samples-per-image K] [--keep-names]
    [--prompt-template T] [--link-file PATH] [--model ...]``."""

    name = "anonymise"
    help = "replace every image of a dataset by Boomerang samples near it (opaque names, optional link file)"
    description = (
        "Anonymise a dataset: every image of IN_DIR is replaced by --samples-per-image Boomerang samples at "
        "--level, written to OUT_DIR in the same layout (class folders and metadata.jsonl/.csv labels and "
        "captions carried through) under opaque names. Higher levels hide the source better and keep less of it; "
        "measure with boomerang audit-privacy. This is not differential privacy (see docs/privacy.md)."
    )
    defaults: dict = {"num_samples": 1, "level_required": True}
    private_report = True  # it names inputs: OUT/.job/report.json, never in the release
    Options = AnonymiseOptions
    State = AnonymiseState
    attempt = 0  # redraws of --verify-top: a copy of the task with attempt > 0 (see redraw)

    def parser_kwargs(self) -> dict:
        return {"epilog": (
            "Outputs: OUT_DIR/<opaque>.png (class folders: OUT_DIR/<label>/<opaque>.png) and metadata.jsonl "
            "(or .csv): the release. OUT_DIR/.job holds the job's secret key, journal and report.json: it links "
            "outputs to sources, so never publish it. Exit status: 0 done; 3 done, some files skipped (OUT_DIR/.job/report.json); "
            "2 bad usage; 1 unexpected failure; 130 stopped (rerun to continue)."
        )}

    # -- (a) flags and options

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--samples-per-image", default=None, metavar="K",
                            help="anonymised samples per input image (default 1; same as --num-samples)")
        parser.add_argument("--keep-names", action="store_true",
                            help="name outputs after their inputs (default: opaque names that reveal no source)")
        parser.add_argument("--prompt-template", default=None, metavar="TEMPLATE",
                            help='text models: a per-image prompt from its label or caption, e.g. "a photo of a '
                                 '{label}" (fields: label, caption, any metadata column)')
        parser.add_argument("--link-file", default=None, metavar="PATH",
                            help="also write the source -> output links (JSONL) here, for boomerang audit-privacy; "
                                 "they undo the anonymisation, so the file is refused inside OUT_DIR or IN_DIR")
        v = parser.add_argument_group("per-item verification (docs/privacy.md)")
        v.add_argument("--verify-top", default=None, metavar="K",
                       help="attack every released item against IN_DIR (and --reference-pool); redraw an item whose "
                            "source ranks within the top K, withhold it if no redraw passes")
        v.add_argument("--features", dest="verify_features", default=None,
                       help="--verify-top: the attack's feature space: pixels (default), ssim or classifier")
        v.add_argument("--verify-seeds", default=None, metavar="R",
                       help="--verify-top: redraws with new noise at the same level before the level rises "
                            "(default 3)")
        v.add_argument("--max-level", default=None, metavar="L",
                       help="--verify-top: then raise the level in steps of 0.05 up to L (default: the level: no rise)")
        v.add_argument("--reference-pool", default=None, metavar="DIR",
                       help="--verify-top: more real images the attacker is assumed to hold")

    def settings_from_args(self, args: argparse.Namespace):
        from boomerang.tasks.flags import samples_per_image, settings_from_args

        if args.level is None and args.timestep is None and not args.from_noise:
            raise SettingError("`level` is required for anonymise (no default: choose it from the measured "
                               "privacy-utility table in docs/privacy.md, e.g. `level` 0.8)")
        k = samples_per_image(args, self.defaults["num_samples"])
        return settings_from_args(args) if k is None else settings_from_args(args, num_samples=k)

    def options_from_args(self, args: argparse.Namespace) -> AnonymiseOptions:
        return AnonymiseOptions(keep_names=bool(args.keep_names), prompt_template=args.prompt_template,
                                link_file=args.link_file, verify_top=args.verify_top,
                                verify_features=args.verify_features, verify_seeds=args.verify_seeds,
                                max_level=args.max_level, reference_pool=args.reference_pool)

    @staticmethod
    def _job_key(out: Path) -> str:
        """The key of the job in OUT if one was started there (same names and samples on a rerun), else new."""
        from boomerang.tasks.journal import JOB_DIR

        job = Path(out) / JOB_DIR / "job.json"
        try:
            old = json.loads(job.read_text(encoding="utf-8"))
            key = old["options"]["key"]
            bytes.fromhex(key)
            if old.get("task") == "anonymise" and len(key) == 64:
                return key
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return secrets.token_hex(32)

    def before_load(self, job: Job) -> None:
        from boomerang.privacy.links import check_link_file

        _check_not_the_inputs(job.settings)
        o = job.options
        if o.link_file is not None:
            link = Path(o.link_file)
            for flag, folder in (("out", job.out), ("input", Path(job.job_settings.inputs[0]))):
                if _inside(link, folder):
                    raise SettingError(f"`link_file` {link} lies inside `{flag}` {folder}: the links undo the "
                                       "anonymisation, so keep them outside the released folder (and never in the input)")
            check_link_file(link)  # writable: refused now, not after the whole job
        if o.verify_top is not None:
            from boomerang.privacy.verify import check_verify_options
            from boomerang.tasks.shards import is_sharded

            if is_sharded(job):
                raise SettingError(f"`verify_top` does not read {job.layout.kind} shards yet; drop it, or give a folder")

            check_verify_options(job)
        if o.key is None:
            job.options = dataclasses.replace(o, key=self._job_key(job.out))
        template = o.prompt_template
        if template is None:
            return
        for item in job.items:
            fields = {**item.columns, "label": item.label, "caption": item.caption}
            missing = [f for f in _template_fields(template) if fields.get(f) is None]
            if missing:
                have = sorted(k for k, v in fields.items() if v is not None) or ["none"]
                raise SettingError(f"`prompt_template` uses {{{missing[0]}}}, but {item.relpath} has no "
                                   f"{missing[0]} (its fields: {', '.join(have)})")

    # -- seeds, names, prompts, records

    def seed(self, job: Job, item, j: int) -> int:
        return secret_seed(job.options.key, job.settings.seed, item.relpath, j, self.attempt)

    def redraw(self, attempt: int) -> "AnonymiseTask":
        """This task seeding redraw ``attempt`` (``--verify-top``)."""
        task = copy.copy(self)
        task.attempt = int(attempt)
        return task

    def sample_outputs(self, job: Job, outputs, sampler, **kwargs):
        if job.options.verify_top is None:
            yield from sampler(job, outputs, **kwargs)
            return
        from boomerang.privacy.verify import verify_block

        yield from verify_block(job, self, outputs, **kwargs)

    def output_name(self, job: Job, output: OutputFile) -> str:
        if job.options.keep_names:
            return super().output_name(job, output)
        stem = opaque_name(job.options.key, output.item.relpath, output.level_index, output.sample)
        if job.layout is not None and job.layout.kind == "classes":
            return f"{output.item.label}/{stem}.png"
        return f"{stem}.png"

    def prompt(self, job: Job, item) -> str | None:
        template = job.options.prompt_template
        if template is None:
            return None
        return template.format(**{**item.columns, "label": item.label, "caption": item.caption})

    def record(self, job: Job, output: OutputFile, plan, result, decoded, pixels) -> dict:
        rec = {"file_name": output.name, **output.item.columns, "level": job.noise_levels[output.level_index][0],
               "timestep": plan.timestep, "sample_index": output.sample}
        if job.options.keep_names:
            rec["source"] = output.item.relpath
        if job.options.verify_top is not None:  # private: the journal keeps it, the metadata never does
            rec[PRIVATE_KEY] = job.state.verified.get(output.index)
        return rec

    # -- end of the job

    def report_fields(self, job: Job, records: list[dict]) -> dict:
        """The signal each level keeps (its plan's ``signal_kept``: sqrt(alpha_bar_t), or 1 - sigma on a
        flow-matching model; docs/privacy.md) and, with ``--verify-top``, the verification counts (the
        per-item detail is in ``verification.json``)."""
        kept = [{"level": nl[0], "timestep": plan.timestep, "signal_kept": round(plan.signal_kept, 6)}
                for nl, plan in zip(job.noise_levels, job.plans)]
        out = {"signal_kept": kept}
        if job.options.verify_top is not None:
            from boomerang.privacy.verify import verification_counts

            out["verification"] = verification_counts(job, records)
        return out

    @staticmethod
    def _links(job: Job, records):
        """``(source, level index, sample, Link)`` of every output, in output order."""
        from boomerang.privacy.links import Link

        outputs = job.outputs
        several_levels = len(job.noise_levels) > 1
        several_samples = job.settings.num_samples > 1
        for r in records:
            o = outputs[r["_unit"]]
            extra = {}
            if several_levels:
                extra["level"] = job.noise_levels[o.level_index][0]
            if several_samples:
                extra["sample"] = o.sample
            yield o.item.relpath, o.level_index, o.sample, Link(o.item.relpath, r["file_name"], extra)

    def shard_plan(self, job: Job, records):
        """Sharded inputs: the release's shards in the job's secret order under opaque names
        (:mod:`boomerang.tasks.anonymise_shards`; ``--keep-names``: mirrored)."""
        from boomerang.tasks.anonymise_shards import shard_plan

        return shard_plan(job, records)

    def finish(self, job: Job, records: list[dict], skipped: list[dict]) -> None:
        from boomerang.tasks.shards import is_sharded

        if is_sharded(job):
            from boomerang.tasks.anonymise_shards import finish_shards

            finish_shards(self, job, records, skipped)
            return
        from boomerang.privacy.links import write_links
        from boomerang.tasks.journal import JOB_DIR
        from boomerang.tasks.metadata import write_metadata_file
        from boomerang.tasks.streams import Replay, external_sorted

        scratch = job.out / JOB_DIR  # the sort's temporary runs: private, on the output's disk
        scratch.mkdir(parents=True, exist_ok=True)
        public = Replay(lambda: ({k: v for k, v in r.items() if k != PRIVATE_KEY} for r in records))
        rows = public
        if not job.options.keep_names:  # rows in name order: the row order reveals no input order
            rows = Replay(lambda: ({**r, "_unit": i} for i, r in enumerate(
                external_sorted(public, key=lambda r: r["file_name"], folder=scratch))))
        fmt = job.layout.metadata_format if job.layout is not None and job.layout.metadata_format else "jsonl"
        write_metadata_file(job.out, rows, fmt)  # streamed: records and Replay come in order
        now = time.time()
        for r in records:  # one modification time for all: the write order (= input order) stays hidden
            try:
                os.utime(job.out / r["file_name"], (now, now))
            except OSError:
                pass
        link_file = job.options.link_file
        if link_file:
            write_links(link_file, (ln for *_, ln in external_sorted(self._links(job, records), key=lambda t: t[:3],
                                                                     folder=scratch)), unique_outputs=True)
            print(f"boomerang anonymise: wrote {len(records)} links to {link_file}: keep it private, it undoes the "
                  "anonymisation", file=sys.stderr)
        if job.options.verify_top is not None:
            from boomerang.privacy.verify import write_verification

            write_verification(job, records, skipped)
        if not job.options.keep_names:
            print(f"boomerang anonymise: {job.out / '.job'} links outputs to sources (job key, journal, report): "
                  "leave it out when you share the outputs", file=sys.stderr)
