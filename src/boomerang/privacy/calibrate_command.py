"""``boomerang calibrate-privacy``: the command-line shell over :func:`boomerang.privacy.calibrate.calibrate_privacy`.

Parsing imports no torch. Exit status: 0 a level is recommended; 4 no level up
to ``--max-level`` meets the target (or too few sources to certify it); 2 bad
input (one line, nothing written); 1 an unexpected failure; 130 interrupted.
Writes ``OUT/calibration.json`` and ``OUT/calibration.png`` (atomically) and
prints the table, the recommended level and the ``boomerang anonymise`` command
that uses it.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex

from boomerang.privacy.spaces import FEATURE_SPACES

#: Exit status when no probed level meets the target.
EXIT_NOT_MET = 4


def add_calibrate_privacy_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``boomerang calibrate-privacy``."""
    from boomerang.tasks.flags import add_sampling_arguments
    from boomerang.tasks.layout import LAYOUTS

    p = subparsers.add_parser(
        "calibrate-privacy",
        help="find the smallest anonymise level whose re-identification meets a target on your data",
        description=(
            "Release --sources images of IN_DIR with the anonymise task at probed levels (max level, min level, "
            "then --bisections halvings) and attack each release with every image of IN_DIR (and "
            "--reference-pool) as candidates; recommend the smallest level whose top-1 re-identification meets "
            "--target-top1 with its Wilson 95% upper bound. Use the sampling flags anonymise will run with. "
            "One attacker, one feature space: not a proof of privacy (docs/privacy.md)."
        ),
        epilog="Exit status: 0 a level recommended; 4 none meets the target; 2 bad input; 1 unexpected failure.",
    )
    p.add_argument("input", metavar="IN_DIR", help="the real images (the anonymise input folder)")
    p.add_argument("--target-top1", required=True, metavar="P",
                   help="target top-1 re-identification share, e.g. 0.05 for 5%%")
    p.add_argument("--out", required=True, metavar="OUT",
                   help="folder for calibration.json and calibration.png (never inside IN_DIR)")
    p.add_argument("--features", default="pixels", choices=FEATURE_SPACES,
                   help="the attack's feature space (default %(default)s)")
    p.add_argument("--sources", default="200", metavar="N", help="sources released at each probe (default %(default)s)")
    p.add_argument("--reference-pool", default=None, metavar="DIR", help="more real images the attacker holds")
    p.add_argument("--bisections", default="6", metavar="N",
                   help="halvings after probing --max-level and --min-level (default %(default)s: resolution 1/64)")
    p.add_argument("--min-level", default="0", metavar="L", help="lower end of the search (default %(default)s)")
    p.add_argument("--max-level", default="1", metavar="L", help="upper end of the search (default %(default)s)")
    p.add_argument("--prompt-template", default=None, metavar="TEMPLATE",
                   help="text models: the per-image prompt, as anonymise --prompt-template")
    p.add_argument("--layout", default="auto", choices=LAYOUTS, help="input layout (default %(default)s)")
    p.add_argument("--size", default=None, metavar="N", help="compare at N x N pixels (as audit-privacy --size)")
    p.add_argument("--class-retention", default=None, metavar="DIR",
                   help="with labelled inputs: a digit classifier folder, or 'bundled', to report the share of "
                        "releases classified as their source's label")
    add_sampling_arguments(p, num_samples=1)
    p.set_defaults(func=run_calibrate_privacy)
    return p


def _number(value, flag: str, cast=float):
    from boomerang.errors import SettingError

    try:
        return cast(value)
    except (TypeError, ValueError):
        raise SettingError(f"{flag} must be a number, got {value!r}") from None


def run_calibrate_privacy(args: argparse.Namespace) -> int:
    """Run ``boomerang calibrate-privacy``; returns the exit status."""
    import sys

    from boomerang.errors import SettingError
    from boomerang.messages import print_error, user_message
    from boomerang.threads import check_threads, resolve_threads

    try:
        if args.level is not None or args.timestep is not None or args.from_noise:
            raise SettingError("calibrate-privacy searches the level: drop --level, --timestep and --from-noise")
        from boomerang.tasks.flags import settings_from_args

        settings = settings_from_args(args)
        target = _number(args.target_top1, "--target-top1")
        sources = _number(args.sources, "--sources", int)
        bisections = _number(args.bisections, "--bisections", int)
        lo, hi = _number(args.min_level, "--min-level"), _number(args.max_level, "--max-level")
        size = None if args.size is None else _number(args.size, "--size", int)
        check_threads(args.threads)
        in_dir, out = pathlib.Path(args.input), pathlib.Path(args.out)
        if not in_dir.is_dir():
            raise SettingError(f"IN_DIR {str(in_dir)!r} is not a folder")
        for name, folder in (("IN_DIR", in_dir), ("--reference-pool", args.reference_pool)):
            if folder is None:
                continue
            folder = pathlib.Path(folder)
            if not folder.is_dir():
                raise SettingError(f"{name} {str(folder)!r} is not a folder")
            r, f = out.resolve(), folder.resolve()
            if r == f or f in r.parents:
                raise SettingError(f"--out {str(out)!r} lies inside {name}: commands never write into their inputs")
        if out.exists() and not out.is_dir():
            raise SettingError(f"--out {str(out)!r} exists and is not a folder")
    except (SettingError, ValueError) as e:
        return print_error(user_message(e))

    try:
        import torch

        from boomerang.privacy.calibrate import calibrate_privacy
        from boomerang.privacy.calibrate_output import anonymise_command, plot_calibration

        threads = resolve_threads(args.threads)
        if threads is not None:
            torch.set_num_threads(threads)
        progress = None if args.progress is False else (lambda m: print(f"calibrate-privacy: {m}", file=sys.stderr))
        try:
            cal = calibrate_privacy(in_dir, target, features=args.features, sources=sources,
                                    reference_pool=args.reference_pool, settings=settings,
                                    prompt_template=args.prompt_template, layout=args.layout, min_level=lo,
                                    max_level=hi, bisections=bisections, size=size,
                                    classifier=args.class_retention, log=progress)
        except (SettingError, ValueError) as e:
            return print_error(user_message(e))
        from boomerang.fileio import write_json

        out.mkdir(parents=True, exist_ok=True)
        result = cal.to_dict()
        if cal.recommended is not None:
            result["anonymise_command"] = shlex.join(anonymise_command(
                in_dir, cal.recommended, settings, prompt_template=args.prompt_template, layout=args.layout))
        write_json(out / "calibration.json", result)
        plot_calibration(cal, out / "calibration.png")
        print(cal.format_table())
        if cal.recommended is None:
            print(f"wrote {out / 'calibration.json'} and {out / 'calibration.png'}")
            return EXIT_NOT_MET
        print(f"level {cal.recommended:g}")
        print(result["anonymise_command"])
        print(f"wrote {out / 'calibration.json'} and {out / 'calibration.png'}")
    except KeyboardInterrupt:
        return print_error("interrupted", 130)
    except BrokenPipeError:
        raise
    except Exception as e:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            raise
        return print_error(f"{type(e).__name__}: {e} (run again with --debug for the traceback)", 1)
    return 0
