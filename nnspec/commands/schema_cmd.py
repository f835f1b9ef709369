"""``nnspec schema [-o FILE]``: the JSON Schema (draft 2020-12) of the spec language, for editors.

Printed on stdout, or written to FILE whole or not at all. It is generated from the front end's own
tables (:mod:`nnspec.compiler.json_schema`); the repository ships it as ``nnspec.schema.json``, which
the example specs name in their first line (docs/editor.md). Imports no engine.
"""

from __future__ import annotations

import argparse
import sys

from ..compiler.json_schema import schema_text
from ..outputs import check_output_file, write_output


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
    """Print the schema, or write it to ``--output`` (checked first) and say so on stderr."""
    if args.output is None:
        sys.stdout.write(schema_text())
        return 0
    check_output_file(args.output, "schema", example="nnspec.schema.json")
    text = schema_text()
    write_schema(args.output, text)
    print(f"wrote {args.output} ({len(text.encode()):,} bytes)", file=sys.stderr)
    return 0


def write_schema(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (:func:`nnspec.outputs.write_output`: never through a link,
    never over a device or FIFO); an unusable path is an :class:`~nnspec.outputs.OutputPathError` naming it."""
    write_output(path, text, "schema", example="nnspec.schema.json")
