"""What the page runs: ``boomerang sample`` into a per-run folder, with a model loaded once.

The page must give exactly what ``boomerang sample`` gives for the same image,
settings and seed (the same PNG bytes, the same ``metadata.json``), so it does
not re-implement sampling: :func:`sample_to_folder` builds the typed settings
(:class:`~boomerang.settings.SampleSettings`, :class:`~boomerang.tasks.job.JobSettings`)
and calls the function the CLI calls, :func:`boomerang.tasks.runner.run_job`, on
the sample task, writing into a fresh folder per run. That function is the only
place this module touches the sampling code (the *adapter*); everything else
here (the run folders, the model cache, the one-line errors) is independent of it.

No torch or gradio import at module level: the page module and the tests
import this cheaply.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from boomerang.tasks.flags import PAGE_FLAGS  # noqa: E402,F401 (the settings the page passes, re-exported)

#: Run folders kept on disk (older ones are deleted when a new run starts).
KEEP_RUNS = 32


@dataclass(frozen=True)
class ModelSpec:
    """The model the server samples with (``boomerang serve``'s own flags).

    Attributes:
        model: hub id or local folder; ``None`` = the bundled model.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        allow_pickle: also accept pickle weights.
        threads: the torch CPU threads the server set (``boomerang.threads.resolve_threads``,
            as ``boomerang sample`` does); ``None`` = torch's own default. Recorded in metadata.json.
        cpu_offload: model CPU offload (``--cpu-offload``; needs a CUDA ``device``).
    """

    model: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    allow_pickle: bool = False
    threads: int | None = None
    cpu_offload: bool = False


#: The page's model choice that applies the CLI's default rule to each input (:mod:`boomerang.default_model`).
AUTO_MODEL = "auto (from the image)"


def model_choices(spec: ModelSpec) -> list[str]:
    """What the page's model choice offers: the server's ``--model`` alone when it was given;
    else :data:`AUTO_MODEL` (the CLI's rule: small gray images -> ``ddpm-mnist5k``, anything
    else -> ``ddpm-photos``) and the bundled pixel models that are installed."""
    if spec.model is not None:
        return [str(spec.model)]
    from boomerang import assets

    out = [AUTO_MODEL]
    for name in (assets.DEFAULT_MODEL_NAME, assets.PHOTO_MODEL_NAME):
        try:
            assets.named_model_path(name)
        except FileNotFoundError:
            continue
        out.append(name)
    return out


@dataclass
class RunResult:
    """One finished run of the page.

    Attributes:
        out: the run's output folder (what ``boomerang sample --out`` would hold).
        metadata: ``metadata.json`` parsed.
        samples: absolute paths of the sample PNGs, in metadata order.
        sheets: absolute paths of the contact sheets (one per input).
        archive: a zip of the whole output folder (samples, sheets, metadata.json).
        command: the equivalent ``boomerang sample`` command line (argv list).
        warnings: the library's warnings during the run, each once, in order (what the
            CLI prints as ``boomerang: warning: ...`` lines).
        model_line: which model the page used and why (its model choice), for the run's summary.
    """

    out: Path
    metadata: dict
    samples: list[Path] = field(default_factory=list)
    sheets: list[Path] = field(default_factory=list)
    archive: Path | None = None
    command: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model_line: str = ""

    @property
    def metadata_path(self) -> Path:
        from boomerang.tasks.sample import METADATA_NAME

        return self.out / METADATA_NAME


class ModelCache:
    """Loads each model the page uses once, on first use, and hands the same object to every run.

    The server's model (``spec.model``; ``None``: the bundled default) and, when the server was
    started without ``--model``, the bundled models the page offers (``get(name)``). Thread-safe:
    two first calls still load one model.
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self._models: dict = {}
        self._lock = threading.Lock()

    def get(self, name: str | None = ...):
        """The loaded ``boomerang.models.DiffusionModel`` for ``name`` (default: ``spec.model``),
        loaded here the first time with the server's device, dtype and pickle flags.

        Raises:
            ValueError: the model cannot be loaded (missing folder, bad weights ...).
        """
        key = self.spec.model if name is ... else name
        with self._lock:
            if key not in self._models:
                from boomerang import api

                s = self.spec
                self._models[key] = api.load(key, device=s.device, dtype=s.dtype, allow_pickle=s.allow_pickle,
                                              cpu_offload=s.cpu_offload)
            return self._models[key]


class RunFolders:
    """Per-run temporary folders under one root that the server owns (never the user's folders).

    Each run gets ``root/run-<n>-<hex>/`` with ``input/`` (a copy of the
    upload, under the name the visitor gave it) and ``out/``. The oldest run
    folders beyond ``keep`` are deleted when a new one is made.
    """

    def __init__(self, root: str | Path | None = None, keep: int = KEEP_RUNS):
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="boomerang-serve-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._n = 0
        self._lock = threading.Lock()

    def new(self) -> Path:
        with self._lock:
            self._n += 1
            run = self.root / f"run-{self._n:05d}-{uuid.uuid4().hex[:8]}"
            (run / "input").mkdir(parents=True)
            old = sorted(p for p in self.root.glob("run-*") if p.is_dir())[:-self.keep]
        for p in old:
            shutil.rmtree(p, ignore_errors=True)
        return run

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def stage_input(upload: str | Path, run: Path, name: str | None = None) -> Path:
    """Copy an uploaded file into ``run/input/`` under its own (or the given) file name."""
    src = Path(upload)
    dest = run / "input" / (Path(name).name if name else src.name)
    shutil.copyfile(src, dest)
    return dest


def sample_to_folder(image: Path, settings: dict, spec: ModelSpec, model, out: Path) -> RunResult:
    """Run ``boomerang sample`` on one staged image into ``out`` with an already loaded model.

    This is the adapter between the page and the sampling code: it builds the typed settings
    from the page's values and the server's model flags, then calls
    :func:`boomerang.tasks.runner.run_job` on the sample task, as the CLI does, handing it
    ``model`` instead of loading the weights again. The files written (sample PNGs, contact
    sheet, ``metadata.json``) are therefore byte for byte the CLI's; metadata.json records
    the equivalent command line (:func:`boomerang.tasks.flags.sample_command`).

    Args:
        image: the input file (inside the run folder).
        settings: page settings, keys of :data:`PAGE_FLAGS`; e.g. ``{"level": "0.3",
            "num_samples": 4, "seed": 0, "steps": 50, "scheduler": "ddpm"}`` (``None``: the default).
        spec: the server's model flags.
        model: the loaded model for ``spec`` (from :class:`ModelCache`).
        out: output folder (must not exist yet, or be empty).

    Returns:
        A :class:`RunResult` (its ``archive`` is not made here; see :func:`make_archive`).

    Raises:
        ValueError: bad settings or an unreadable image (``boomerang.errors.SettingError``
            or ``ImageInputError``; :func:`error_line` gives the CLI's line for it).
        RuntimeError: the runner did not finish (an exit status other than 0).
    """
    with _collect_warnings() as said:
        return _sample_to_folder(image, settings, spec, model, out, said)


def _sample_to_folder(image, settings, spec, model, out, said) -> RunResult:
    from boomerang.settings import SampleSettings
    from boomerang.tasks.flags import sample_command
    from boomerang.tasks.job import JobSettings
    from boomerang.tasks.runner import run_job
    from boomerang.tasks.sample import SampleTask

    given = {k: settings[k] for k in PAGE_FLAGS if settings.get(k) is not None}
    sampling = SampleSettings(**given, model=spec.model, device=spec.device, dtype=spec.dtype,
                              allow_pickle=spec.allow_pickle, cpu_offload=spec.cpu_offload)
    argv = sample_command(image, settings, model=spec.model, device=spec.device, dtype=spec.dtype,
                          allow_pickle=spec.allow_pickle, threads=spec.threads, out=str(out),
                          cpu_offload=spec.cpu_offload)
    # progress: a tqdm bar, which the page's progress (gr.Progress(track_tqdm=True)) follows
    where = JobSettings(inputs=(str(image),), out=str(out), threads=spec.threads, progress=True, command=argv)
    task = SampleTask()
    rc = run_job(task, sampling, task.Options(), where, model=model)  # the server's model, loaded once
    if rc != 0:
        raise RuntimeError(f"boomerang sample stopped with exit status {rc}")
    result = collect(out, argv)
    result.warnings = list(dict.fromkeys(said))
    return result


def collect(out: Path, argv: list[str]) -> RunResult:
    """Read a finished output folder back (metadata.json and the files it lists)."""
    from boomerang.tasks.sample import METADATA_NAME

    meta = json.loads((out / METADATA_NAME).read_text())
    samples = [out / r["file"] for r in meta["samples"]]
    sheets = [out / i["contact_sheet"] for i in meta["inputs"]]
    return RunResult(out=out, metadata=meta, samples=samples, sheets=sheets, command=["boomerang", *argv])


def make_archive(result: RunResult, name: str) -> Path:
    """Zip the run's output folder (samples, contact sheets, metadata.json) next to it; returns the zip."""
    path = result.out.parent / f"{name}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in sorted(result.out.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(result.out).as_posix())
    result.archive = path
    return path


def error_line(exc: BaseException, run: Path | None = None) -> str:
    """The one line the CLI would print for ``exc`` (``boomerang: error: ...``).

    Paths inside the run's ``input/`` folder are shown by file name, as the
    visitor named them (what ``boomerang sample NAME`` run next to the file says).
    """
    from boomerang.messages import user_message

    msg = user_message(exc)  # parameter names become flags (`level` -> --level), as the CLI prints them
    if run is not None:
        for prefix in (str(run / "input") + "/", str((run / "input").resolve()) + "/"):
            msg = msg.replace(prefix, "")
    return f"boomerang: error: {msg}"


_WARNINGS_LOCK = threading.Lock()


@contextlib.contextmanager
def _collect_warnings():
    """Collect boomerang's own warnings raised inside, as the CLI does
    (:func:`boomerang.messages.collect_warnings`); runs are serialised here because the
    warnings machinery is process-wide."""
    from boomerang.messages import collect_warnings

    with _WARNINGS_LOCK, collect_warnings() as said:
        yield said
