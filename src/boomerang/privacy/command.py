"""``boomerang audit-privacy``: the command-line shell over :func:`boomerang.privacy.audit.audit_folders`.

Parsing imports no torch (``boomerang --help`` stays fast); the audit loads it.

Exit status: 0 the audit ran on every linked image; 3 it ran, but some files
or links were skipped (counted on the table's last line, listed in
``--json``); 2 bad input (a folder or link file missing or unusable, a bad
flag): one ``boomerang: error: ...`` line (as every command), nothing written;
1 an unexpected failure (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import pathlib

from boomerang.privacy.spaces import FEATURE_SPACES

#: Exit status when the audit ran but skipped files or links.
EXIT_SKIPPED = 3


def add_audit_privacy_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``boomerang audit-privacy``."""
    p = subparsers.add_parser(
        "audit-privacy",
        help="linkage attack: how often is an anonymised image's source found again?",
        description=(
            "For each anonymised image linked in --link-file, rank every image in REAL_DIR by its distance "
            "in the chosen feature space; print the top-1 and top-5 re-identification rates with Wilson 95% "
            "intervals, the chance rate and a histogram of the true source's rank. With --holdout DIR, also the "
            "distance of each released image to its closest real record (DCR) against that of real held-out "
            "images, and the closest pairs (--sheet). Give --link-file, --holdout or both. Not a proof of "
            "privacy: one attacker, one feature space (see docs/privacy.md)."
        ),
        epilog="Exit status: 0 done; 3 done, some files or links skipped; 2 bad input; 1 unexpected failure.",
    )
    p.add_argument("real_dir", metavar="REAL_DIR", help="the real (input) images, searched recursively")
    p.add_argument("anon_dir", metavar="ANON_DIR", help="the anonymised images (boomerang anonymise's --out)")
    p.add_argument("--link-file", default=None, metavar="PATH",
                   help="JSONL source -> output links (boomerang anonymise --link-file): the linkage attack")
    p.add_argument("--holdout", default=None, metavar="DIR",
                   help="real images NOT released: compare each released image's distance to its closest record "
                        "in REAL_DIR (DCR) with theirs (no links needed)")
    p.add_argument("--sheet", default=None, metavar="PATH",
                   help="with --holdout: draw the closest (released, real) pairs as a contact sheet PNG")
    p.add_argument("--pairs", default="16", metavar="N", help="closest pairs listed and drawn (default %(default)s)")
    p.add_argument("--features", default="pixels", choices=FEATURE_SPACES,
                   help="distance: pixels (Euclidean), ssim (1 - SSIM) or classifier (the bundled digit "
                        "classifier's 128-d features) (default %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the full report (rates, histogram, every image's rank, skipped files) as JSON")
    p.add_argument("--size", default=None, metavar="N",
                   help="compare at N x N pixels, N at most 1024: every image is held at N x N x 3 float32 values "
                        "(12 MiB each at 1024) (default: the images' own size if all share one up to 256x256, "
                        "else 64x64)")
    p.add_argument("--background", default="white",
                   help="colour transparent pixels are composited over (default %(default)s)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N: device of the classifier features (default %(default)s)")
    p.add_argument("--threads", default=None, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=run_audit_privacy)
    return p


class _Bad(Exception):
    pass


def _positive_int(value, flag: str) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise _Bad(f"{flag} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise _Bad(f"{flag} must be a positive integer, got {value!r}")
    return n


def _background(value: str) -> tuple[int, int, int]:
    from PIL import ImageColor

    try:
        return ImageColor.getrgb(value)[:3]
    except ValueError:
        raise _Bad(f"--background must be a colour name or #rrggbb, got {value!r}") from None


def _inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def run_audit_privacy(args: argparse.Namespace) -> int:
    """Run ``boomerang audit-privacy``; returns the exit status."""
    from boomerang.messages import print_error, user_message
    from boomerang.errors import SettingError
    from boomerang.privacy.audit import AuditInputError, check_size
    from boomerang.settings import parse_device, torch_device
    from boomerang.threads import check_threads

    try:
        size = check_size(_positive_int(args.size, "--size"), "--size")  # before anything is allocated
        device = parse_device(args.device)
        threads = check_threads(args.threads, allow_torch=False)
        background = _background(args.background)
        real, anon = pathlib.Path(args.real_dir), pathlib.Path(args.anon_dir)
        holdout = pathlib.Path(args.holdout) if args.holdout else None
        pairs = _positive_int(args.pairs, "--pairs")
        if args.link_file is None and holdout is None:
            raise _Bad("give --link-file PATH (the linkage attack), --holdout DIR (distance to closest record) "
                       "or both")
        if args.sheet and holdout is None:
            raise _Bad("--sheet draws the closest pairs of the --holdout comparison; add --holdout DIR")
        inputs = (("REAL_DIR", real), ("ANON_DIR", anon)) + ((("--holdout", holdout),) if holdout else ())
        for flag, d in inputs:
            if not d.is_dir():
                raise _Bad(f"{flag} {str(d)!r} is not a folder")
        if holdout is not None and (holdout.resolve() == real.resolve() or _inside(holdout, real)
                                    or _inside(real, holdout)):
            raise _Bad(f"--holdout {str(holdout)!r} holds the released source images (REAL_DIR {str(real)!r}); give "
                       "real images that were NOT released, e.g. a held-out split")
        json_path = pathlib.Path(args.json) if args.json else None
        sheet_path = pathlib.Path(args.sheet) if args.sheet else None
        for what, path in (("--json", json_path), ("--sheet", sheet_path)):
            if path is None:
                continue
            for flag, d in inputs:
                if _inside(path, d):
                    raise _Bad(f"{what} {str(path)!r} is inside {flag}; write the report elsewhere "
                               "(commands never write into their input folders)")
            if not path.parent.is_dir():
                raise _Bad(f"{what}: folder {str(path.parent)!r} does not exist")
    except (_Bad, SettingError, AuditInputError) as e:
        return print_error(user_message(e))

    try:
        import torch

        from boomerang.privacy.audit import audit_folders

        if threads is not None:
            torch.set_num_threads(threads)
        try:
            torch_device(device)  # the one device check (sample's too): no CUDA here is one line, exit 2
            report = dcr = None
            if args.link_file is not None:
                report = audit_folders(real, anon, args.link_file, args.features, size=size, device=device,
                                       background=background)
            if holdout is not None:
                from boomerang.privacy.dcr import audit_dcr, pair_sheet
                from boomerang.privacy.links import read_links

                links = read_links(args.link_file) if args.link_file is not None else None
                try:
                    dcr, sets = audit_dcr(real, anon, holdout_dir=holdout, links=links, features=args.features,
                                          size=size, background=background, pairs=pairs, device=device)
                except ValueError as e:
                    raise AuditInputError(str(e)) from None
        except (AuditInputError, SettingError) as e:
            return print_error(user_message(e))
        if report is not None:
            print(report.format_table())
        if dcr is not None:
            print(dcr.format_table())
            if sheet_path is not None:
                pair_sheet(dcr, sets, sheet_path)
                print(f"wrote {sheet_path}")
        if json_path is not None:
            from boomerang.imageio import atomic_write_bytes

            out = report.to_dict() if report is not None else {}
            if dcr is not None:
                out["dcr"] = dcr.to_dict()
            atomic_write_bytes(json_path, (json.dumps(out, indent=1) + "\n").encode("utf-8"))
            print(f"wrote {json_path}")
    except KeyboardInterrupt:
        return print_error("interrupted", 130)
    except BrokenPipeError:  # `| head`: the reader went away; the CLI stops quietly (boomerang.cli.main)
        raise
    except Exception as e:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            raise
        return print_error(f"{type(e).__name__}: {e} (run again with --debug for the traceback)", 1)
    return EXIT_SKIPPED if report is not None and report.skipped else 0
