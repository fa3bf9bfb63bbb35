"""The link file: which anonymised output came from which source image (torch-free).

The link file is what an audit needs and what an attacker wants: it undoes
the anonymisation. ``boomerang anonymise`` writes it only when asked
(``--link-file PATH``) and never inside the released folder.

Format: JSON Lines (UTF-8), one object per anonymised output::

    {"source": "cats/img_0001.png", "output": "3f9c0a7d41e2b865.png"}
    {"source": "cats/img_0001.png", "output": "b0c4d2e9a17f3365.png", "sample": 1}

* ``source``: the source image's path relative to the real (input) folder,
  POSIX separators (``/``).
* ``output``: the anonymised image's path relative to the output folder,
  POSIX separators.
* any other keys (``sample``: the sample index j when several samples are
  drawn per source) are kept in :attr:`Link.extra` and ignored by the audit.

Every ``output`` appears once; a ``source`` may appear several times (one
line per sample). Blank lines are allowed. Paths must be relative, with no
``..`` part, so that a link file cannot point outside the two folders.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["Link", "LinkFileError", "read_links", "write_links", "format_link", "check_link_file"]


class LinkFileError(ValueError):
    """A link file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Link:
    """One source -> output link.

    Attributes:
        source: source path relative to the real folder (POSIX).
        output: output path relative to the anonymised folder (POSIX).
        extra: any other keys of the line (e.g. ``{"sample": 1}``).
    """

    source: str
    output: str
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _check_relpath(value, what: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise LinkFileError(f"{where}: {what!r} must be a non-empty string, got {value!r}")
    p = pathlib.PurePosixPath(value)
    if p.is_absolute() or "\\" in value or any(part == ".." for part in p.parts) or value.startswith("./"):
        raise LinkFileError(
            f"{where}: {what} {value!r} must be a relative POSIX path inside its folder (no leading '/', "
            "no '..', no backslashes)"
        )
    return p.as_posix()


def format_link(link: Link) -> str:
    """One JSON line (without the newline) for ``link``: ``source``, ``output``, then ``extra`` keys sorted."""
    obj = {"source": link.source, "output": link.output}
    obj.update({k: link.extra[k] for k in sorted(link.extra)})
    return json.dumps(obj, ensure_ascii=False)


def read_links(path: str | os.PathLike) -> list[Link]:
    """Read a link file (format in the module docstring).

    Args:
        path: the JSONL file.

    Returns:
        The links in file order.

    Raises:
        LinkFileError: missing or unreadable file, a line that is not a JSON
            object with string ``source`` and ``output``, a path that is not
            relative, an output listed twice, or no links at all.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LinkFileError(f"{path}: no such link file; pass the --link-file written by boomerang anonymise") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LinkFileError(f"{path}: cannot read the link file ({e})") from None
    links: list[Link] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise LinkFileError(f"{where}: not JSON ({e.msg}); a link file has one JSON object per line") from None
        if not isinstance(obj, dict):
            raise LinkFileError(f"{where}: expected a JSON object with 'source' and 'output', got {type(obj).__name__}")
        source = _check_relpath(obj.get("source"), "source", where)
        output = _check_relpath(obj.get("output"), "output", where)
        if output in seen:
            raise LinkFileError(f"{where}: output {output!r} is already linked on line {seen[output]}")
        seen[output] = lineno
        extra = {k: v for k, v in obj.items() if k not in ("source", "output")}
        links.append(Link(source, output, extra))
    if not links:
        raise LinkFileError(f"{path}: the link file holds no links")
    return links


def check_link_file(path: str | os.PathLike) -> None:
    """Refuse a link file that :func:`write_links` could not write, before any work is done.

    :func:`write_links` creates the missing folders, then writes a temporary file in the
    file's folder and renames it: so the nearest folder that exists must be a folder this
    process can create files in (tried with an unnamed temporary file, which leaves nothing).

    Raises:
        boomerang.errors.SettingError: (a ValueError) naming ``link_file``, the path and why.
    """
    import tempfile

    from boomerang.errors import SettingError

    path = pathlib.Path(path)
    if path.exists() and not path.is_file():
        raise SettingError(f"`link_file` {path} exists and is not a file")
    folder = path.parent if str(path.parent) else pathlib.Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise SettingError(f"`link_file` {path} cannot be written: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise SettingError(f"`link_file` {path} cannot be written in {folder} "
                           f"({exc.strerror or exc}); choose a folder you can write to") from None


def write_links(path: str | os.PathLike, links: Iterable[Link], *, unique_outputs: bool = False) -> pathlib.Path:
    """Write links as JSONL, atomically (temporary file in the same folder, then rename), streamed.

    Args:
        path: destination file; its folder is created if needed.
        links: :class:`Link` objects (paths are checked as in :func:`read_links`).
        unique_outputs: the caller guarantees that no output is linked twice (a job's outputs
            have unique names): the check, which holds every name, is left out.

    Returns:
        The path written.

    Raises:
        LinkFileError: a path that is not relative, or an output listed twice.
    """
    from boomerang.fileio import atomic_open

    path = pathlib.Path(path)
    seen: set[str] = set()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        for i, link in enumerate(links, start=1):
            where = f"link {i}"
            src = _check_relpath(link.source, "source", where)
            out = _check_relpath(link.output, "output", where)
            if not unique_outputs:
                if out in seen:
                    raise LinkFileError(f"{where}: output {out!r} is linked twice")
                seen.add(out)
            fh.write((format_link(Link(src, out, dict(link.extra))) + "\n").encode("utf-8"))
    return path
