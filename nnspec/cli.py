"""The ``nnspec`` command line. Each subcommand lives in ``nnspec/commands/<name>.py`` and defines
``add_arguments(parser)`` and ``run(args) -> int``; this module only dispatches.

Any :class:`~nnspec.errors.NnspecError` is printed as a message (diagnostics for a spec error) and
turned into an exit code: 2 for a spec error, 1 otherwise. A user mistake never shows a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .errors import NnspecError, SpecError

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
    "export": "export a spec and its weights to another format (Keras .keras)",
    "import": "turn a Keras model into a spec and a weights file",
}


def _module(name: str):
    return importlib.import_module(f"nnspec.commands.{name}_cmd")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="nnspec", description="Declarative neural-network specs, compiled to JAX, TensorFlow, Theano (PyTensor) and Keras 3.")
    parser.add_argument("--version", action="version", version=f"nnspec {__version__}")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nnspec`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except SpecError as exc:
        for d in exc.diagnostics:
            print(d.format(), file=sys.stderr)
        return 2
    except NnspecError as exc:
        print(f"nnspec {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnspec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
