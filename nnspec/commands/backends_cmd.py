"""``nnspec backends``: each registered backend with its engine version, availability, devices (each GPU
by name and memory) and how it runs here (for example the Theano backend's linker)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec backends``."""
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


def describe_backend(name: str) -> dict[str, Any]:
    """``{name, aliases, engine, version, available, reason, devices, device_counts, gpus, execution}`` of one
    backend (never raises)."""
    from ..backends import ALIASES, backend_class, get_backend

    info: dict[str, Any] = {
        "name": name,
        "aliases": sorted(a for a, n in ALIASES.items() if n == name),
        "engine": "",
        "version": "",
        "available": False,
        "reason": "",
        "devices": [],
        "device_counts": {},
        "gpus": [],
        "execution": {},
    }
    try:
        cls = backend_class(name)
        info["engine"] = getattr(cls, "engine", "")
        ok, why = cls.availability()
        if not ok:
            info["reason"] = why
            return info
        backend = get_backend(name)
        info["version"] = backend.engine_version()
        info["devices"] = list(backend.devices())
        info["device_counts"] = dict(backend.device_counts())
        info["gpus"] = list(backend.device_details())
        info["execution"] = dict(backend.execution_notes())
        info["available"] = True
    except Exception as exc:  # a broken backend is reported, not raised
        info["reason"] = f"{type(exc).__name__}: {exc}"
    return info


def run(args: argparse.Namespace) -> int:
    """Print the backends table."""
    from ..backends import backend_names
    from ..backends.accelerators import describe_gpu
    from ..tables import Table, print_tables

    rows = [describe_backend(n) for n in backend_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("", ["backend", "engine", "version", "devices", "status"])
    for r in rows:
        table.add(
            r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else ""),
            r["engine"],
            r["version"] or "-",
            ", ".join(f"{d} ({r['device_counts'].get(d, 1)})" for d in r["devices"]) or "-",
            "available" if r["available"] else f"unavailable: {r['reason']}",
        )
    details = [f"{r['name']}: {describe_gpu(g)}" for r in rows for g in r["gpus"]]
    details += [f"{r['name']}: {key}: {value}" for r in rows for key, value in r["execution"].items()]
    print_tables([table, *(["\n".join(details)] if details else [])])
    return 0
