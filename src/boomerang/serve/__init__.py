"""``boomerang serve``: a local web page with a level slider (Gradio, the ``app`` extra).

Importing this package imports neither torch nor gradio: the CLI registers
the sub-command from here at start-up. :func:`run_serve` checks the flags and
the model's configs, loads the model once, builds the page
(:mod:`boomerang.serve.page`) and serves it until interrupted. Every run on the
page goes through :func:`boomerang.serve.runs.sample_to_folder`, the same code
path as ``boomerang sample``.
"""

from __future__ import annotations

import argparse
import sys

#: How to get the optional dependencies of the page.
INSTALL_HINT = 'pip install -e ".[app]" -c constraints.txt  (in a clone of boomerang; the PyPI project named boomerang is unrelated)'
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``boomerang serve`` on the CLI's sub-parsers (no torch, no gradio import)."""
    p = subparsers.add_parser(
        "serve",
        help="a local web page with a level slider (needs the 'app' extra)",
        description=(
            "Serve a page where you upload an image (or pick a shipped example), move the noise level and get "
            "local samples and a level sweep (contact sheet), each downloadable with its metadata.json. "
            "Runs are queued and the model loads once. The files are those 'boomerang sample' writes for the "
            "same image, settings and seed."
        ),
        epilog=f"Needs the optional 'app' extra: {INSTALL_HINT}. Binds to {DEFAULT_HOST} unless --host says otherwise.",
    )
    from boomerang.assets import DEFAULT_MODEL_NAME, MODEL_NAMES

    p.add_argument("--model", default=None, metavar="ID_OR_DIR",
                   help=f"hub id, local model folder, or a bundled model's short name ({', '.join(MODEL_NAMES)}) "
                        f"(default: the bundled MNIST model, {DEFAULT_MODEL_NAME})")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default %(default)s: this machine only; 0.0.0.0 serves the network)")
    p.add_argument("--port", default=DEFAULT_PORT, help="TCP port (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (default %(default)s)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load pickle (.bin/.ckpt) weights; only for files you trust")
    p.add_argument("--cpu-offload", action="store_true",
                   help="model CPU offload: each network moves to the GPU only while it runs; needs --device cuda")
    p.add_argument("--threads", default=None, metavar="N",
                   help="torch CPU threads (default: the cores idle at start, as 'boomerang sample'; "
                        "'torch' for torch's own default)")
    p.add_argument("--examples", default=None, metavar="DIR",
                   help="folder of example images offered on the page (default: the repository's examples/digits)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=run_serve)
    return p


def _error(message: str, status: int = 2) -> int:
    print(f"boomerang: error: {message}", file=sys.stderr)
    return status


def check_port(value) -> int:
    """``--port`` as an int in 1..65535; ValueError otherwise."""
    try:
        port = int(str(value).strip())
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be an integer in 1..65535, got {value!r}")
    return port


def check_bind(host: str, port: int) -> None:
    """Check that the server can listen on ``host:port``, before anything loads, by binding a
    socket there and closing it again (with ``SO_REUSEADDR``, as the server itself binds, so a
    port that a stopped server left in TIME_WAIT is free).

    Args:
        host: ``--host``: a name or an address of this machine (``0.0.0.0`` / ``::``: every one).
        port: ``--port`` (1..65535, :func:`check_port`).

    Raises:
        ValueError: one line naming the flag and what to do: a name that does not resolve,
            an address that is not this machine's, a port in use or not allowed.
    """
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"--host {host!r} is not an address or a name this machine can resolve ({exc}); "
                         f"use {DEFAULT_HOST} (this machine only) or 0.0.0.0 (every network interface)") from None
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(f"--port {port}: the port is already in use on {host} (another server, or another "
                             f"'boomerang serve'?); stop it or choose another --port, e.g. --port {_next(port)}") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ValueError(f"--host {host} is not an address of this machine; use {DEFAULT_HOST} (this machine "
                             "only), 0.0.0.0 (every network interface) or one of this machine's addresses") from None
        if exc.errno == errno.EACCES:
            raise ValueError(f"--port {port}: not allowed to listen there (ports below 1024 need root); "
                             f"choose a port from 1024 to 65535, e.g. the default --port {DEFAULT_PORT}") from None
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); "
                         "choose another --host or --port") from None


def _next(port: int) -> int:
    return port + 1 if port < 65535 else DEFAULT_PORT


def run_serve(args: argparse.Namespace) -> int:
    """Run ``boomerang serve``; returns the exit status (2 for bad flags or a missing 'app' extra)."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        return _error(f"'boomerang serve' needs the optional 'app' extra (gradio); install it with: {INSTALL_HINT}")
    try:
        return _serve(args)
    except KeyboardInterrupt:
        return 0
    except ValueError as exc:  # SettingError / ImageInputError: one line, flags named as flags
        if args.debug:
            raise
        from boomerang.messages import user_message

        return _error(user_message(exc))


def _serve(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    # Offline: no analytics or version checks (set before gradio is imported by the page).
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from boomerang.settings import SampleSettings
    from boomerang.threads import resolve_threads
    from boomerang.models import read_model_info
    from boomerang.serve import page, runs

    port = check_port(args.port)
    check_bind(args.host, port)  # a busy port or a bad --host: one line, before the model loads
    s = SampleSettings(model=args.model, device=args.device, dtype=args.dtype, allow_pickle=args.allow_pickle,
                       cpu_offload=bool(getattr(args, "cpu_offload", False)))
    threads = resolve_threads(args.threads)
    if args.examples is not None and not Path(args.examples).is_dir():
        raise ValueError(f"--examples {args.examples} is not a folder")
    read_model_info(s.model)  # a missing model is one line, before anything loads
    if s.cpu_offload:  # no CUDA GPU: one line, before the page starts
        from boomerang.models.loading import check_cpu_offload

        check_cpu_offload(s.device)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    spec = runs.ModelSpec(model=s.model, device=s.device, dtype=s.dtype, allow_pickle=s.allow_pickle, threads=threads,
                          cpu_offload=s.cpu_offload)
    cache = runs.ModelCache(spec)
    folders = runs.RunFolders()
    import signal

    def _stop(signum, frame):  # SIGTERM ends the server like Ctrl-C: run folders are removed
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        print(f"boomerang serve: loading {s.model or 'the bundled model'}; run folders in {folders.root}",
              file=sys.stderr, flush=True)
        app = page.build_app(page.PageActions(cache, folders), examples=page.find_examples(args.examples))
        try:
            page.launch(app, host=args.host, port=port, allowed=[folders.root])
        except OSError as exc:  # taken since check_bind (gradio's message suggests settings of its own)
            if args.debug:
                raise
            check_bind(args.host, port)  # the one line that says why, if it still applies
            raise ValueError(f"--host {args.host} --port {port}: the server could not start there (taken since "
                             "the check at start-up?); choose another --port") from None
    finally:
        folders.cleanup()
        signal.signal(signal.SIGTERM, previous)
    # Gradio returns from launch on Ctrl-C / SIGTERM but leaves non-daemon threads that keep the
    # process alive; the run folders are gone and nothing else is pending, so end the process here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
