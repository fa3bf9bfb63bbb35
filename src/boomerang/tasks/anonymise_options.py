"""The options of ``boomerang anonymise`` (:class:`AnonymiseOptions`, validated in one place) and the
checks its task runs on them before anything is loaded or written (re-exported by :mod:`.anonymise`)."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path

from boomerang.errors import SettingError

__all__ = ["AnonymiseOptions"]


def _check_not_the_inputs(s) -> None:
    """Level (or timestep) 0 releases the inputs themselves (a latent model: their VAE round trip): a
    warning, not a refusal (an audit's or a study's control release is made at level 0 on purpose)."""
    given = s.timestep if s.timestep is not None else s.level
    values = [float(v) for v in (given if isinstance(given, (list, tuple)) else [given]) if v is not None]
    if s.from_noise or 0.0 not in values:
        return
    import warnings

    from boomerang.errors import BoomerangWarning

    what = "timestep 0" if s.timestep is not None else "level 0"
    warnings.warn(f"{what} releases the inputs unchanged (a latent model: their VAE round trip): nothing is "
                  "anonymised at it; use it only as a control. For a release choose a level > 0 (calibrate-privacy "
                  "suggests one; docs/privacy.md has the measured table)", BoomerangWarning, stacklevel=2)


def _inside(path: Path, folder: Path) -> bool:
    p, f = path.resolve(), folder.resolve()
    return p == f or f in p.parents


def _template_fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise SettingError(f"`prompt_template` {template!r} is not a valid format string ({exc})") from None


@dataclass(frozen=True)
class AnonymiseOptions:
    """The options of ``anonymise``.

    Attributes:
        keep_names: name outputs after their inputs (default: opaque names).
        prompt_template: text models: a per-image prompt such as ``"a photo of a {label}"``
            (fields: ``label``, ``caption``, any metadata column), or ``None``.
        key: the job's secret key (64 hex digits); ``None``: the key of the job already in OUT,
            else a new random one (:meth:`AnonymiseTask.before_load`).
        link_file: where to write the source -> output links, or ``None`` (not part of the job's
            definition: a rerun may write them elsewhere).

    Raises:
        SettingError: an empty template or one whose fields are not names.
    """

    keep_names: bool = False
    prompt_template: str | None = None
    key: str | None = None
    link_file: str | None = field(default=None, metadata={"job_definition": False})
    verify_top: int | None = None
    verify_features: str | None = None
    verify_seeds: int | None = None
    max_level: float | None = None
    reference_pool: str | None = None

    def __post_init__(self) -> None:
        from boomerang.levels import check_positive_int
        from boomerang.privacy.spaces import FEATURE_SPACES

        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.verify_top is not None:
            put("verify_top", check_positive_int(self.verify_top, "verify_top"))
            if self.verify_features is not None and self.verify_features not in FEATURE_SPACES:
                raise SettingError(f"`verify_features` must be one of {', '.join(FEATURE_SPACES)}, "
                                   f"got {self.verify_features!r}")
            if self.verify_seeds is not None:
                try:
                    put("verify_seeds", int(self.verify_seeds))
                except (TypeError, ValueError):
                    put("verify_seeds", -1)
                if self.verify_seeds < 0:
                    raise SettingError(f"`verify_seeds` must be an integer >= 0, got {self.verify_seeds!r}")
            if self.max_level is not None:
                try:
                    put("max_level", float(self.max_level))
                except (TypeError, ValueError):
                    put("max_level", -1.0)
                if not 0.0 <= self.max_level <= 1.0:
                    raise SettingError(f"`max_level` must be a level in [0, 1], got {self.max_level!r}")
            if self.reference_pool is not None:
                put("reference_pool", str(Path(self.reference_pool).resolve()))
        else:
            given = [n for n in ("verify_features", "verify_seeds", "max_level", "reference_pool")
                     if getattr(self, n) is not None]
            if given:
                raise SettingError(f"`{given[0]}` only applies with `verify_top` (per-item verification)")
        template = self.prompt_template
        if template is not None:
            if not template.strip():
                raise SettingError("`prompt_template` is empty; give a template such as \"a photo of a {label}\"")
            for f in _template_fields(template):
                if not f or not f.isidentifier():
                    raise SettingError(f"`prompt_template` fields must be names such as {{label}} or {{caption}}, "
                                       f"got {{{f}}}")
