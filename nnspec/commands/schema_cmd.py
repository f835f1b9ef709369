"""``nnspec schema [-o FILE]``: the JSON Schema (draft 2020-12) of the spec language, for editors.

Printed on stdout, or written to FILE whole or not at all. It is generated from the front end's own
tables (:mod:`nnspec.compiler.json_schema`); the repository ships it as ``nnspec.schema.json``, which
the example specs name in their first line (docs/editor.md). Imports no engine.
"""

from __future__ import annotations

import argparse
import sys

from ..compiler.json_schema import schema_text
from ..errors import OutputError
from ..outputs import check_output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``-o/--output FILE``."""
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="write the schema to FILE (e.g. nnspec.schema.json) instead of printing it",
    )


def run(args: argparse.Namespace) -> int:
    """Print the schema, or write it to ``--output`` and say so on stderr."""
    text = schema_text()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    write_schema(args.output, text)
    print(f"wrote {args.output} ({len(text.encode()):,} bytes)", file=sys.stderr)
    return 0


def write_schema(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically; an unusable path is an :class:`OutputError` naming it."""
    from ..data.safety import shown
    from ..runtime.atomic import atomic_write

    check_output_file(path, "schema", example="nnspec.schema.json")
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise OutputError(f"{shown(path)}: cannot write the schema: {exc.strerror or exc}") from None
