"""The ``nnspec`` command line. Each subcommand lives in ``nnspec/commands/<name>.py`` and defines
``add_arguments(parser)`` and ``run(args) -> int``; this module only dispatches.

Any :class:`~nnspec.errors.NnspecError` is printed as a message (diagnostics for a spec error) and
turned into an exit code (docs/cli.md): 2 for a spec error, 3 for a diverged training, 4 for results
that could not be written, 1 otherwise. A user mistake never shows a traceback; anything unexpected
prints one line saying it is an internal error and how to see the traceback (``--debug`` or
``NNSPEC_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Sequence

from .errors import (
    EXIT_DIVERGED,
    EXIT_ERROR,
    EXIT_OUTPUT,
    EXIT_SPEC,
    NnspecError,
    OutputError,
    SpecError,
    TrainingDiverged,
)

#: subcommand -> one-line help; the module is ``nnspec.commands.<name>``.
COMMANDS: dict[str, str] = {
    "check": "check spec files and report every problem",
    "summary": "print the layer table of a spec: shapes, parameters, FLOPs",
    "run": "train a spec on a backend and write a run directory",
    "evaluate": "evaluate saved weights on the spec's test split",
    "predict": "predict with saved weights on an .npy input",
    "plot": "overlay the metrics of one or more run directories",
    "compare": "compare backends on one spec: forward, gradients, training, timing",
    "backends": "list the backends, their engines, availability and devices",
    "export": "export a spec and its weights to another format (Keras .keras, ONNX)",
    "import": "turn a Keras model into a spec and a weights file",
    "schema": "print the JSON Schema of the spec language (for editors)",
    "diff": "compare two specs or two run directories",
    "sweep": "run a grid or random sample of spec settings as ordinary runs",
    "profile": "time forward and backward per layer on each backend",
}


def _module(name: str):
    return importlib.import_module(f"nnspec.commands.{name}_cmd")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="nnspec",
        description="Declarative neural-network specs, compiled to JAX, TensorFlow, Theano (PyTensor) and Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"nnspec {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an internal error (also NNSPEC_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        try:
            module = _module(name)
        except ModuleNotFoundError as exc:
            if exc.name == f"nnspec.commands.{name}_cmd":
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _escaping_output() -> list[tuple[object, str]]:
    """Make stdout and stderr print what their encoding cannot hold (an undecodable byte of a path, non-ASCII
    text under an ASCII locale) as backslash escapes instead of failing; returns what to restore."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if errors and errors != "backslashreplace" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError, AttributeError):  # a closed or unusual stream: leave it
                continue
            changed.append((stream, errors))
    return changed


def _restore_output(changed: list[tuple[object, str]]) -> None:
    for stream, errors in changed:
        try:
            stream.reconfigure(errors=errors)  # type: ignore[attr-defined]
        except (ValueError, OSError, AttributeError):
            pass


def _undecodable(exc: UnicodeEncodeError) -> str | None:
    """For text that holds undecodable bytes of a file name (lone surrogates), the text around them, escaped."""
    text = exc.object if isinstance(exc.object, str) else ""
    if not any(0xDC80 <= ord(c) <= 0xDCFF for c in text[exc.start : exc.end]):
        return None
    around = text[max(exc.start - 60, 0) : exc.end + 60]
    return around.encode("ascii", "backslashreplace").decode("ascii")


def _debug_requested(args: argparse.Namespace) -> bool:
    from .runtime.env import TRUE_WORDS

    return bool(args.debug) or os.environ.get("NNSPEC_DEBUG", "").strip().lower() in TRUE_WORDS


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nnspec`` console script."""
    changed = _escaping_output()
    try:
        return _main(argv)
    finally:
        _restore_output(changed)


def _main(argv: Sequence[str] | None) -> int:
    from .runtime.env import check_environment

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    debug = _debug_requested(args)
    try:
        check_environment()
        return int(args._run(args) or 0)
    except SpecError as exc:
        for d in exc.diagnostics:
            print(d.format(), file=sys.stderr)
        return EXIT_SPEC
    except NnspecError as exc:
        print(f"nnspec {args.command}: error: {exc}", file=sys.stderr)
        if exc.exit_code is not None:
            return exc.exit_code
        if isinstance(exc, TrainingDiverged):
            return EXIT_DIVERGED
        return EXIT_OUTPUT if isinstance(exc, OutputError) else EXIT_ERROR
    except KeyboardInterrupt:
        print("nnspec: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"nnspec {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        if debug:
            traceback.print_exc()
        print(
            f"nnspec {args.command}: error: out of memory: the model or data is too big for this machine's memory "
            "(or for a limit on it, such as ulimit -v); use a smaller model or train.batch_size",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except UnicodeEncodeError as exc:
        if debug:
            traceback.print_exc()
        around = _undecodable(exc)
        if around is None:
            return _internal(args, exc)
        print(
            f"nnspec {args.command}: error: a path or name holds bytes that are not valid UTF-8 (shown escaped: "
            f"{around}), and it must be written where only UTF-8 is allowed; use a path of valid UTF-8",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback unless asked
        if debug:
            traceback.print_exc()
        return _internal(args, exc)


def _internal(args: argparse.Namespace, exc: BaseException) -> int:
    """Report an unexpected exception in one line (an internal error); exit 1."""
    print(
        f"nnspec {args.command}: internal error ({type(exc).__name__}: {str(exc)[:200]}); please report it, with "
        "the traceback that `nnspec --debug ...` (or NNSPEC_DEBUG=1) prints",
        file=sys.stderr,
    )
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
