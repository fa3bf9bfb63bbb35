"""A task command run from parsed arguments, with the exit statuses of every dataset command (torch-free)."""

from __future__ import annotations

import argparse

from boomerang.messages import print_error, user_message

__all__ = ["run_task_command"]


def run_task_command(args: argparse.Namespace) -> int:
    """Run a task command (``boomerang sample`` and the dataset commands) on the shared runner:
    the flags become typed settings (:func:`boomerang.tasks.flags.parse_task_args`), then
    :func:`boomerang.tasks.runner.run_job`. Returns the exit status: 0 done, 3 done with skipped
    files, 2 bad input (one error line), 1 an unexpected failure (one line; the traceback with
    ``--debug``), 130 interrupted."""
    from boomerang.tasks.flags import parse_task_args
    from boomerang.tasks.runner import run_job

    try:
        settings, options, job_settings = parse_task_args(args.task, args)
        return run_job(args.task, settings, options, job_settings)
    except KeyboardInterrupt:
        return print_error("interrupted", 130)
    except ValueError as exc:  # SettingError and ImageInputError are ValueErrors
        if args.debug:
            raise
        return print_error(user_message(exc), 2)
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if args.debug:
            raise
        return print_error(f"{type(exc).__name__}: {exc} (run again with --debug for the traceback)", 1)
