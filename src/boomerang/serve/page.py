"""The Gradio page of ``boomerang serve``: an image, a level slider, samples and a level sweep.

Layout: the input (upload or a shipped example, shown as the model reads it)
and the settings on the left; two tabs on the right: *Samples* (a gallery of
local samples at the slider's level) and *Level sweep* (the contact sheet for a
list of levels, the paper's Figure 1). Every run writes, through
:func:`boomerang.serve.runs.sample_to_folder`, exactly what ``boomerang sample``
writes, and offers it for download (a zip of the folder and its metadata.json).

Runs share one queue slot (``concurrency_id="sample"``, limit 1): visitors wait
their turn and the single loaded model is never used twice at once. The level
read-out and the upload check are light and run outside that slot.

Requires the ``app`` extra (gradio). Works offline: analytics are off and the
theme uses system fonts (no web fonts are fetched).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from boomerang.serve import runs

#: elem_id of the page parts the browser test reads.
IDS = {
    "file": "input-file", "preview": "input-preview", "status": "status", "level": "level",
    "level_info": "level-info", "run": "run", "gallery": "gallery", "run_info": "run-info",
    "downloads": "downloads", "sweep_levels": "sweep-levels", "sweep_run": "sweep-run",
    "sheet": "sheet", "sweep_downloads": "sweep-downloads", "model": "model",
}
DEFAULT_SWEEP = "0.1,0.3,0.5,0.7,0.9"
#: Small images (28x28 digits) are shown enlarged: keep their pixels sharp.
CSS = "#gallery img, #sheet img, #input-preview img { image-rendering: pixelated; }"
#: The preview of a small input is enlarged by an integer factor to about this side (display only).
PREVIEW_SIDE = 112


class LevelInfo:
    """Maps a level to what the slider shows: the timestep t and alpha_bar_t.

    Uses the model's own noise schedule (its scheduler config); t follows the
    exact Boomerang mapping ``t = round(level * (T - 1))`` (``levels.level_to_timestep``).
    """

    def __init__(self, scheduler_config: dict, num_train_timesteps: int):
        from boomerang.models.schedule import NoiseSchedule

        self.T = int(num_train_timesteps)
        self.schedule = NoiseSchedule.from_config(scheduler_config)
        # flow-matching models (SD3): the slider shows sigma of x_t = (1 - sigma) x0 + sigma eps
        self.alphas_cumprod = list(self.schedule.alphas_cumprod) if self.schedule.kind == "vp" else None

    def timestep(self, level: float) -> int | None:
        from boomerang.levels import check_level, level_to_timestep

        return level_to_timestep(check_level(level), self.T)

    def text(self, level, steps=None) -> str:
        """One line of Markdown for the slider, e.g. ``level 0.300 → t = 300 · alpha_bar = 0.7191``."""
        try:
            t = self.timestep(float(level))
        except (TypeError, ValueError) as exc:
            from boomerang.messages import user_message

            return user_message(exc)
        if t is None:
            return f"level {float(level):.3f} → no noise (t = none, alpha_bar = 1): the input comes back"
        if self.alphas_cumprod is None and self.schedule.dynamic_shift:  # FLUX: sigma depends on the image's size
            line = f"level {float(level):.3f} → training step {t} · sigma set by the image's size (dynamic shift)"
        elif self.alphas_cumprod is None:
            line = f"level {float(level):.3f} → training step {t} · sigma = {self.schedule.sigma(t):.4f}"
        else:
            line = f"level {float(level):.3f} → t = {t} · alpha_bar = {self.alphas_cumprod[t]:.4f}"
        try:
            from boomerang.levels import num_denoiser_evals

            line += f" · {num_denoiser_evals(t, int(steps), self.T)} denoiser evaluations"
        except (TypeError, ValueError):
            pass
        return line


AUTO_MODEL = runs.AUTO_MODEL
model_choices = runs.model_choices


def find_examples(folder: str | Path | None = None) -> list[Path]:
    """Shipped example images: ``folder``, else the repository's ``examples/digits`` and
    ``examples/photos`` (held-out photo crops, for the photo model) when present."""
    from boomerang.imageio import iter_image_files

    if folder is None:
        root = Path(__file__).resolve().parents[3] / "examples"
        folders = [root / "digits", root / "photos"]
    else:
        folders = [Path(folder)]
    return [p for f in folders if f.is_dir() for p in iter_image_files(f, recursive=False, unique=False)]


def _run_info(result: runs.RunResult) -> str:
    """Markdown summary of a run, from its metadata.json (what the page shows after a run)."""
    by_level: dict[float, dict] = {}
    for r in result.metadata["samples"]:
        by_level.setdefault(r["level"], r)
    lines = []
    for level, r in by_level.items():
        n = sum(1 for s in result.metadata["samples"] if s["level"] == level)
        t = "none (input returned)" if r["timestep"] is None else str(r["timestep"])
        if r.get("sigma") is not None and r["timestep"] is not None:  # flow matching: x_t = (1 - sigma) x0 + sigma eps
            noise = f"sigma = {r['sigma']:.4f}"
        else:
            noise = f"alpha_bar = {1.0 if r.get('alpha_bar') is None else r['alpha_bar']:.4f}"
        lines.append(
            f"level {level:.3f} → t = {t} · {noise} · "
            f"{r['num_denoiser_evals']} denoiser evaluations · {n} samples · {r['scheduler']}"
        )
    cmd = " ".join(_quote(a) for a in result.command)
    head = [result.model_line] if result.model_line else []
    return "\n\n".join(head + lines) + f"\n\nSame as: `{cmd}`"


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


class PageActions:
    """What the page's buttons and inputs do, as plain methods (the tests call them directly).

    Args:
        cache: the server's model (loaded on construction, once).
        folders: where each run writes.
    """

    def __init__(self, cache: runs.ModelCache, folders: runs.RunFolders):
        self.cache = cache
        self.folders = folders
        self.model = cache.get()
        self.info = LevelInfo(self.model.scheduler_config, self.model.num_train_timesteps)
        self.takes_prompt = bool(getattr(self.model, "takes_prompt", False))
        self.choices = model_choices(cache.spec)

    def resolve_model(self, choice, path, background="white") -> tuple[str | None, str]:
        """(the ``--model`` value a run uses, a line saying why) for the page's model ``choice``.

        :data:`AUTO_MODEL` (or None) applies the CLI's default rule to the input
        (:func:`boomerang.default_model.choose_default_model`: ``None``, the bundled digit model,
        for a small gray image, ``"ddpm-photos"`` otherwise); a bundled name or the server's
        ``--model`` is used as given.

        Raises:
            SettingError: a choice the page does not offer.
        """
        if choice in (None, "", AUTO_MODEL) and self.cache.spec.model is None:
            from boomerang.api import SampleSettings
            from boomerang.default_model import choose_default_model

            picked = choose_default_model([path], SampleSettings(background=background).background_rgb)
            return picked.model, f"model {picked.name}: {picked.reason}"
        if choice in (None, "", AUTO_MODEL):
            choice = self.cache.spec.model
        if choice not in self.choices:
            from boomerang.errors import SettingError

            raise SettingError(f"`model` {choice} is not offered here; choose one of {', '.join(self.choices)}")
        return choice, f"model {choice}"

    def check_input(self, path, background="white"):
        """Upload check: (the image as the model will read it, a status line); a bad file gives the CLI's error line."""
        if not path:
            return None, ""
        from boomerang.api import SampleSettings
        from boomerang.imageio import read_image

        from boomerang.messages import user_message

        try:
            loaded = read_image(path, background=SampleSettings(background=background).background_rgb)
        except ValueError as exc:  # the CLI's line, naming the file as the visitor named it
            msg = user_message(exc).replace(str(Path(path).parent) + os.sep, "")
            return None, f"boomerang: error: {msg}"
        import numpy as np
        from PIL import Image

        q = np.rint(np.clip(loaded.pixels, 0, 1) * 255).astype(np.uint8)
        w, h = loaded.size
        shown = Image.fromarray(q)
        factor = PREVIEW_SIDE // max(w, h)
        if factor > 1:
            shown = shown.resize((w * factor, h * factor), Image.NEAREST)
        return shown, f"{Path(path).name}: {w} x {h} pixels, ready"

    def settings_of(self, level, num_samples, seed, steps, scheduler, schedule, eta, background, prompt="",
                    negative="", guidance=7.5) -> dict:
        """The page's widget values as ``runs.PAGE_FLAGS`` settings (text settings only for text models)."""
        s = {"level": level, "num_samples": _int(num_samples), "seed": _int(seed), "steps": _int(steps),
             "scheduler": scheduler, "schedule": schedule, "eta": eta, "background": background}
        if self.takes_prompt:
            s.update(prompt=prompt, negative_prompt=negative, guidance_scale=guidance)
        return s

    def run(self, path, settings: dict, model=None) -> tuple[runs.RunResult | None, str]:
        """One run into a fresh folder: (result, "") or (None, the CLI's one-line error).

        ``model``: the page's model choice (:meth:`resolve_model`; None: :data:`AUTO_MODEL`
        without ``--model``, else the server's model). The run is what ``boomerang sample
        --model M`` writes for the resolved M, with the model loaded once per server."""
        if not path:
            return None, "boomerang: error: upload an image or pick an example first"
        run_dir = self.folders.new()
        try:
            name, why = self.resolve_model(model, path, settings.get("background") or "white")
            loaded = self.cache.get(name)
            spec = dataclasses.replace(self.cache.spec, model=name)
            staged = runs.stage_input(path, run_dir)
            result = runs.sample_to_folder(staged, settings, spec, loaded, run_dir / "out")
        except ValueError as exc:
            return None, runs.error_line(exc, run_dir)
        result.model_line = why
        runs.make_archive(result, f"boomerang-{Path(path).stem}")
        return result, ""

    def run_samples(self, path, level, *common, model=None):
        """Samples tab: (gallery items, run info, download files, status)."""
        result, error = self.run(path, self.settings_of(f"{float(level):.3f}", *common), model)
        if result is None:
            return [], "", None, error
        recs = result.metadata["samples"]
        gallery = [(str(p), f"s{r['sample_index']}") for p, r in zip(result.samples, recs)]
        files = [str(result.archive), str(result.metadata_path)]
        return gallery, _run_info(result), files, _done(result)

    def run_sweep(self, path, levels, *common, model=None):
        """Level sweep tab: (contact sheet file, run info, download files, status)."""
        result, error = self.run(path, self.settings_of(str(levels).replace(" ", ""), *common), model)
        if result is None:
            return None, "", None, error
        files = [str(result.archive), str(result.metadata_path)]
        return str(result.sheets[0]), _run_info(result), files, _done(result)


def _done(result: runs.RunResult) -> str:
    """Status after a run: the count, then the CLI's warning lines (file names as the visitor gave them)."""
    lines = [f"done: {len(result.metadata['samples'])} samples"]
    prefix = str(result.out.parent / "input") + os.sep
    lines += [f"boomerang: warning: {w.replace(prefix, '')}" for w in result.warnings]
    return "\n\n".join(lines)


def _int(value):
    """Gradio numbers arrive as floats; whole ones become ints (what the CLI would be given)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    return int(f) if f.is_integer() else value


def build_app(actions: PageActions, *, examples: list[Path] | None = None):
    """Build the page (a ``gradio.Blocks``) around ``actions``.

    Args:
        actions: the page's handlers, holding the loaded model.
        examples: example image files offered under the upload.

    Returns:
        The ``gradio.Blocks`` app, its queue set up (runs one at a time); serve it with :func:`launch`.
    """
    import gradio as gr

    from boomerang import api
    from boomerang.scheduler_names import SCHEDULER_NAMES

    spec = actions.cache.spec
    info = actions.info
    model = actions.model
    takes_prompt = actions.takes_prompt
    d = api.SampleSettings()

    # Explicit parameters: gradio maps inputs to them and finds the Progress tracker by signature.
    def run_samples(path, level, num_samples, seed, steps, scheduler, schedule, eta, background, prompt, negative,
                    guidance, model_choice, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc="sampling")
        return actions.run_samples(path, level, num_samples, seed, steps, scheduler, schedule, eta, background,
                                   prompt, negative, guidance, model=model_choice)

    def run_sweep(path, levels, num_samples, seed, steps, scheduler, schedule, eta, background, prompt, negative,
                  guidance, model_choice, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc="sampling")
        return actions.run_sweep(path, levels, num_samples, seed, steps, scheduler, schedule, eta, background,
                                 prompt, negative, guidance, model=model_choice)

    title = "Boomerang: local samples of an image"
    # delete_cache: gradio's own copies of uploads and outputs older than an hour go, hourly.
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            f"## {title}\n"
            "Push the image part of the way into the model's forward (noising) process, then run the reverse "
            "process back: small levels keep the image, level 1 is ordinary sampling. "
            + (f"Model: `{spec.model}` (T = {info.T}, {model.kind}), {spec.device}, {spec.dtype}."
               if spec.model is not None else
               f"Model: chosen below; *{AUTO_MODEL}* follows the command line's rule (small gray images: the "
               f"digit model, anything else: the colour photo model `ddpm-photos`), {spec.device}, {spec.dtype}.")
        )
        with gr.Row():
            with gr.Column(scale=1):
                file = gr.File(label="Image (upload)", type="filepath", file_count="single", elem_id=IDS["file"])
                if examples:
                    gr.Examples(examples=[[str(p)] for p in examples], inputs=[file], label="Shipped examples")
                preview = gr.Image(label="As the model reads it", type="pil", interactive=False, height=160,
                                   elem_id=IDS["preview"])
                status = gr.Markdown("", elem_id=IDS["status"])
                model_choice = gr.Dropdown(actions.choices, value=actions.choices[0], label="Model",
                                           interactive=len(actions.choices) > 1, elem_id=IDS["model"])
                num_samples = gr.Slider(1, 16, value=d.num_samples, step=1, label="Samples")
                seed = gr.Number(value=d.seed, precision=0, minimum=0, label="Seed")
                scheduler = gr.Dropdown(["auto", *SCHEDULER_NAMES], value=d.scheduler, label="Scheduler")
                steps = gr.Number(value=d.steps, precision=0, minimum=1, label="Steps (budget of a full chain)")
                prompt = gr.Textbox(value=d.prompt, label="Prompt", visible=takes_prompt)
                negative = gr.Textbox(value=d.negative_prompt, label="Negative prompt", visible=takes_prompt)
                guidance = gr.Number(value=d.guidance_scale, label="Guidance scale", visible=takes_prompt)
                with gr.Accordion("More settings", open=False):
                    schedule = gr.Dropdown(list(api.SCHEDULES), value=d.schedule, label="Schedule")
                    eta = gr.Number(value=d.eta, minimum=0, label="DDIM eta")
                    background = gr.Textbox(value=d.background, label="Background for transparent pixels")
            with gr.Column(scale=2):
                with gr.Tab("Samples"):
                    level = gr.Slider(0, 1, value=api.DEFAULT_LEVEL, step=0.001, label="Level",
                                      elem_id=IDS["level"])
                    level_info = gr.Markdown(info.text(api.DEFAULT_LEVEL, d.steps), elem_id=IDS["level_info"])
                    go = gr.Button("Sample", variant="primary", elem_id=IDS["run"])
                    gallery = gr.Gallery(label="Samples", columns=4, height="auto", elem_id=IDS["gallery"])
                    run_info = gr.Markdown("", elem_id=IDS["run_info"])
                    downloads = gr.File(label="Download (zip of the run, metadata.json)", file_count="multiple",
                                        interactive=False, elem_id=IDS["downloads"])
                with gr.Tab("Level sweep"):
                    sweep_levels = gr.Textbox(DEFAULT_SWEEP, label="Levels (comma-separated)",
                                              elem_id=IDS["sweep_levels"])
                    sweep_go = gr.Button("Sweep", variant="primary", elem_id=IDS["sweep_run"])
                    gr.Markdown("Contact sheet: the input, then one row per level, labelled with the level, "
                                "the timestep t and the denoiser evaluations.")
                    sheet = gr.Image(show_label=False, type="filepath", interactive=False, elem_id=IDS["sheet"])
                    sweep_info = gr.Markdown("")
                    sweep_downloads = gr.File(label="Download (zip of the run, metadata.json)", file_count="multiple",
                                              interactive=False, elem_id=IDS["sweep_downloads"])

        common = [num_samples, seed, steps, scheduler, schedule, eta, background, prompt, negative, guidance,
                  model_choice]
        light = dict(concurrency_limit=None, show_progress="hidden")
        file.change(actions.check_input, [file, background], [preview, status], **light)
        level.change(info.text, [level, steps], [level_info], **light)
        steps.change(info.text, [level, steps], [level_info], **light)
        heavy = dict(concurrency_limit=1, concurrency_id="sample")
        go.click(run_samples, [file, level, *common], [gallery, run_info, downloads, status], **heavy)
        sweep_go.click(run_sweep, [file, sweep_levels, *common], [sheet, sweep_info, sweep_downloads, status], **heavy)
    app.queue(default_concurrency_limit=1)
    return app


def launch(app, *, host: str, port: int, allowed: list[Path]):
    """Serve ``app`` on ``host:port`` until Ctrl-C (``KeyboardInterrupt``; blocking), offline: no
    share link, no analytics, system fonts. Gradio's own start and stop lines (which suggest a
    ``share=True`` the command line cannot set) are replaced by two lines of ours on stderr."""
    import contextlib
    import io
    import sys
    import time

    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
               allowed_paths=[str(p) for p in allowed], theme=theme, css=CSS, quiet=True, ssr_mode=False,
               mcp_server=False, prevent_thread_lock=True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"boomerang serve: open http://{shown}:{port}/ (served on {host}); Ctrl-C stops the server",
          file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.redirect_stdout(io.StringIO()):  # gradio's "Closing server running on port ..."
            app.close()
    print("boomerang serve: stopped", file=sys.stderr, flush=True)
