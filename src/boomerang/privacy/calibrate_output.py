"""What a calibration gives the user besides its numbers: the plot of re-identification against the
level (:func:`plot_calibration`) and the ``boomerang anonymise`` command line that uses the recommended
level (:func:`anonymise_command`). The calibration itself is :mod:`boomerang.privacy.calibrate`."""

from __future__ import annotations

from boomerang.privacy.calibrate import Calibration


def plot_calibration(cal: Calibration, path) -> None:
    """Top-1 (and top-5) re-identification with Wilson 95% intervals against the level, the target
    line and the recommendation; written atomically as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from boomerang.fileio import atomic_write_bytes
    from boomerang.stats import wilson

    ps = sorted(cal.probes, key=lambda p: p.level)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key, label in (("top1", "top-1"), ("top5", "top-5")):
        rates = [getattr(p, key) for p in ps]
        x = [p.level for p in ps]
        y = [100 * r.rate for r in rates]
        ci = [wilson(r.hits, r.n) for r in rates]
        ax.errorbar(x, y, yerr=[[yy - 100 * c[0] for yy, c in zip(y, ci)], [100 * c[1] - yy for yy, c in zip(y, ci)]],
                    marker="o", capsize=3, label=f"{label} re-identification")
    ax.axhline(100 * cal.target, color="k", linestyle="--", linewidth=1, label=f"target {100 * cal.target:g}%")
    if cal.recommended is not None:
        ax.axvline(cal.recommended, color="tab:green", linewidth=1, label=f"recommended {cal.recommended:g}")
    ax.set_xlabel("level")
    ax.set_ylabel("% of sources found")
    ax.set_title(f"{cal.n_sources} sources, {cal.num_candidates} candidates, features {cal.features}", fontsize=9)
    ax.legend(fontsize=8)
    ax.set_ylim(-2, 102)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def anonymise_command(in_dir, level: float, settings, *, prompt_template=None, layout="auto",
                      out: str = "OUT_DIR") -> list[str]:
    """The ``boomerang anonymise`` command line that releases IN_DIR at ``level`` with ``settings``
    (the sampling flags that differ from their defaults)."""
    from boomerang.settings import SampleSettings

    d = SampleSettings(num_samples=1)
    argv = ["boomerang", "anonymise", str(in_dir), "--level", f"{level:g}", "--out", out]
    flags = {"steps": "--steps", "scheduler": "--scheduler", "schedule": "--schedule", "eta": "--eta",
             "model": "--model", "prompt": "--prompt", "negative_prompt": "--negative-prompt",
             "guidance_scale": "--guidance-scale", "device": "--device", "dtype": "--dtype",
             "background": "--background", "kernels": "--kernels"}
    for key, flag in flags.items():
        v = getattr(settings, key)
        if v != getattr(d, key):
            argv += [flag, str(v)]
    if settings.allow_pickle:
        argv.append("--allow-pickle")
    if settings.cpu_offload:
        argv.append("--cpu-offload")
    if prompt_template is not None:
        argv += ["--prompt-template", prompt_template]
    if layout != "auto":
        argv += ["--layout", layout]
    return argv
