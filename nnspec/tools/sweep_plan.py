"""What a sweep runs: the grid given as ``KEY=V1,V2`` items, its combinations (all, or a seeded random
sample) times the backends, and a readable, filesystem-safe name for each run.

A grid item's KEY is a ``--set`` path (``train.optimizer.adam.learning_rate``) and its values are
split at the commas that are not inside brackets, braces or quotes (``input.shape=[8,8,1],[64]`` is two
values); each value is passed to ``--set`` as written, so it is read as YAML there. A run is named after
the settings that vary (``lr=0.001_bs=32-jax``): keys are shortened to their last part (a few common
ones abbreviated, more parts taken where two would clash), values keep letters, digits and ``.+-``.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import NnspecError

#: Most runs one sweep may plan (a larger grid needs ``--random N``).
MAX_RUNS = 10_000
#: Longest run name before it is cut and given a hash suffix.
MAX_NAME = 96
_ABBREVIATIONS = {
    "learning_rate": "lr",
    "batch_size": "bs",
    "weight_decay": "wd",
    "validation_split": "val_split",
    "momentum": "mom",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")
_PAIRS = {"[": "]", "{": "}", "(": ")"}


@dataclass(frozen=True)
class GridAxis:
    """One grid item: the ``--set`` path, its values as written, and the short name used in run names."""

    key: str
    values: tuple[str, ...]
    short: str = ""


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its folder name, backend and the grid settings ``(key, value)`` it uses."""

    name: str
    backend: str
    settings: tuple[tuple[str, str], ...]

    @property
    def overrides(self) -> list[str]:
        """The grid settings as ``key=value`` strings for ``--set``."""
        return [f"{k}={v}" for k, v in self.settings]


def split_values(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces, parentheses and quotes; each part stripped."""
    parts: list[str] = []
    current: list[str] = []
    closers: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in _PAIRS:
            closers.append(_PAIRS[ch])
        elif closers and ch == closers[-1]:
            closers.pop()
        elif ch == "," and not closers:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return parts


def parse_grid_item(item: str) -> GridAxis:
    """``KEY=V1,V2,...`` as a :class:`GridAxis` (values in order, repeats dropped); raises for a malformed item."""
    key, sep, rest = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise NnspecError(
            f"--grid {item!r}: expected KEY=V1,V2,... (a --set path such as train.optimizer.adam.learning_rate and "
            "comma-separated values)"
        )
    values = split_values(rest)
    if any(v == "" for v in values):
        raise NnspecError(f"--grid {item!r}: a value is empty; write KEY=V1,V2 with a value between every two commas")
    return GridAxis(key, tuple(dict.fromkeys(values)))


def parse_grid(items: Sequence[str]) -> tuple[GridAxis, ...]:
    """Every ``--grid`` item, with short names that tell their keys apart; a key given twice is an error."""
    axes = [parse_grid_item(i) for i in items]
    keys = [a.key for a in axes]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise NnspecError(
            f"--grid gives {', '.join(twice)} more than once; list all its values in one item (KEY=V1,V2)"
        )
    shorts = short_names(keys)
    return tuple(GridAxis(a.key, a.values, s) for a, s in zip(axes, shorts))


def short_names(keys: Sequence[str]) -> list[str]:
    """A short name per key: its last part (abbreviated), with more parts where two keys would clash."""
    parts = [re.split(r"[.\[\]]+", k.strip(".[]")) for k in keys]
    taken = [1] * len(keys)
    while True:
        names = [_abbreviate(p, n) for p, n in zip(parts, taken)]
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            return names
        grown = False
        for i, name in enumerate(names):
            if name in clashes and taken[i] < len(parts[i]):
                taken[i] += 1
                grown = True
        if not grown:
            return [_safe(k) for k in keys]


def _abbreviate(parts: Sequence[str], n: int) -> str:
    last = _ABBREVIATIONS.get(parts[-1], parts[-1])
    return _safe(".".join([*parts[-n:-1], last]) if n > 1 else last)


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "empty"


def combinations(axes: Sequence[GridAxis], sample: int | None = None, seed: int = 0) -> list[tuple[str, ...]]:
    """Every combination of the axes' values in grid order, or a seeded sample of ``sample`` of them (in grid order).

    Bounded: more than :data:`MAX_RUNS` combinations, or a sample larger than that, is an error saying so (nothing is
    enumerated first, however large the grid)."""
    sizes = [len(a.values) for a in axes]
    total = math.prod(sizes)
    if sample is not None and min(sample, total) > MAX_RUNS:
        raise NnspecError(
            f"--random {sample:,}: a sweep runs at most {MAX_RUNS:,} runs (the grid has {total:,} combinations); "
            "ask for a smaller sample"
        )
    if sample is not None and sample < total:
        chosen: Sequence[int] = sorted(sample_indices(total, sample, seed))
    elif total > MAX_RUNS:
        raise NnspecError(
            f"the grid has {total:,} combinations, more than a sweep runs ({MAX_RUNS:,}); run a sample of them with "
            "--random N"
        )
    else:
        chosen = range(total)
    return [_combination(axes, sizes, i) for i in chosen]


def sample_indices(total: int, count: int, seed: int) -> list[int]:
    """``count`` distinct indices below ``total``, seeded (``random.sample``; for a grid too large for it to index,
    seeded draws until ``count`` distinct ones are found, quick as ``count`` is far below ``total`` there)."""
    rng = random.Random(seed)
    if total <= sys.maxsize:
        return rng.sample(range(total), count)
    picked: dict[int, None] = {}
    while len(picked) < count:
        picked.setdefault(rng.randrange(total))
    return list(picked)


def _combination(axes: Sequence[GridAxis], sizes: Sequence[int], index: int) -> tuple[str, ...]:
    """Combination number ``index`` in grid order (the last axis varies fastest)."""
    picks = []
    for size in reversed(sizes):
        index, pick = divmod(index, size)
        picks.append(pick)
    return tuple(a.values[p] for a, p in zip(axes, reversed(picks)))


def run_name(axes: Sequence[GridAxis], values: Sequence[str], backend: str) -> str:
    """``short=value_short=value-backend`` over the axes with more than one value (``backend`` alone when none)."""
    parts = [f"{a.short}={_safe(v)}" for a, v in zip(axes, values) if len(a.values) > 1]
    return "_".join(parts) + f"-{backend}" if parts else backend


def plan_runs(
    axes: Sequence[GridAxis], backends: Sequence[str], sample: int | None = None, seed: int = 0
) -> list[PlannedRun]:
    """The sweep's runs: each chosen combination on each backend, with unique names (a hash added where needed)."""
    combos = combinations(axes, sample, seed)
    if len(combos) * len(backends) > MAX_RUNS:
        raise NnspecError(
            f"the sweep would start {len(combos) * len(backends):,} runs ({len(combos):,} combinations on "
            f"{len(backends)} backends), more than a sweep runs ({MAX_RUNS:,}); use --random N with a smaller N"
        )
    runs = [
        PlannedRun(run_name(axes, values, b), b, tuple((a.key, v) for a, v in zip(axes, values)))
        for values in combos
        for b in backends
    ]
    counts = Counter(r.name for r in runs)
    unique = []
    for r in runs:
        if len(r.name) > MAX_NAME or counts[r.name] > 1:
            digest = hashlib.sha1(repr(r.settings).encode()).hexdigest()[:8]
            head = r.name[: MAX_NAME - len(r.backend) - 10].rstrip("_.-")
            r = PlannedRun(f"{head}-{digest}-{r.backend}", r.backend, r.settings)
        unique.append(r)
    return unique


def default_out(spec: str | Path) -> Path:
    """``sweeps/<spec file stem>``: the same for every start of one sweep, so that a restart finds it."""
    return Path("sweeps") / _safe(Path(spec).stem)
