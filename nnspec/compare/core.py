"""``compare``: run one spec on several engines from the same weights, batches and dropout masks, and check
each against the NumPy float64 reference.

Every engine starts from :func:`nnspec.compiler.init.initial_weights` (rounded to the compared dtype) and
sees the first batches of the spec's training data in the seeded epoch-0 order
(:mod:`nnspec.compare.batches`). The reference gets exactly the same (rounded) numbers, in float64.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..compiler.init import initial_weights
from ..compiler.ir import Graph
from ..errors import BackendError
from .batches import ComparisonData, batches, load_data
from .parity import compare_forward, compare_gradients, compare_trajectory, compute_reference, first_over
from .timing import time_model
from .tolerances import Tolerances, tolerances_for

if TYPE_CHECKING:
    from ..backends.base import CompiledModel

#: Exit code of ``nnspec compare`` when some engine disagrees with the reference (or fails to run).
EXIT_DISAGREE = 3

AGREE, DISAGREE, ERROR, UNSUPPORTED = "agree", "DISAGREE", "error", "unsupported"
#: The parity checks a comparison can run, in order.
PARTS: tuple[str, ...] = ("forward", "gradients", "trajectory")


@dataclass
class CompareResult:
    """Everything a comparison found. The DataFrames have a ``backend`` column; see :mod:`nnspec.compare.parity`
    and :mod:`nnspec.compare.timing` for the other columns."""

    spec: str
    dtype: str
    batch: int
    steps: int
    tolerances: Tolerances
    data_source: str
    backends: list[str]
    forward: pd.DataFrame = field(default_factory=pd.DataFrame)
    gradients: pd.DataFrame = field(default_factory=pd.DataFrame)
    trajectory: pd.DataFrame = field(default_factory=pd.DataFrame)
    timing: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        """True when every engine that ran agrees with the reference within tolerance (declared gaps aside)."""
        return bool(len(self.summary)) and bool(self.summary["status"].isin([AGREE, UNSUPPORTED]).all())

    @property
    def exit_code(self) -> int:
        """0 when :attr:`ok`, else :data:`EXIT_DISAGREE`."""
        return 0 if self.ok else EXIT_DISAGREE

    def status(self, backend: str) -> str:
        """``agree``, ``DISAGREE``, ``error`` or ``unsupported`` for one engine."""
        return str(self.summary.set_index("backend").loc[backend, "status"])

    def first_divergence(self, backend: str) -> dict[str, Any]:
        """The first layer (forward), weight (gradients) and step (trajectory) over tolerance, for one engine."""
        row = self.summary.set_index("backend").loc[backend]
        return {k: row[k] for k in ("first_forward", "first_gradient", "first_step")}

    def to_frame(self) -> pd.DataFrame:
        """All parity and timing rows in one long table, with a ``section`` column (what ``compare.csv`` holds)."""
        parts = []
        for section, df in (
            ("forward", self.forward),
            ("gradients", self.gradients),
            ("trajectory", self.trajectory),
            ("timing", self.timing),
        ):
            if len(df):
                parts.append(df.assign(section=section))
        if not parts:
            return pd.DataFrame(columns=["section", "backend"])
        frame = pd.concat(parts, ignore_index=True, sort=False)
        front = ["section", "backend"]
        return frame[front + [c for c in frame.columns if c not in front]]


def _compile(
    name: str, graph: Graph, weights: Mapping[str, np.ndarray], device: str, dtype: str
) -> tuple["CompiledModel", float]:
    from ..backends import get_backend

    backend = get_backend(name)
    start = time.perf_counter()
    model = backend.compile(graph, weights, device=device, dtype=dtype)
    return model, time.perf_counter() - start


def compare(
    graph: Graph,
    backends: Sequence[str] | None = None,
    *,
    dtype: str = "float32",
    steps: int = 10,
    batch: int | None = None,
    tolerance: float | Tolerances | None = None,
    repeats: int = 3,
    timing: bool = True,
    device: str = "auto",
    data: ComparisonData | None = None,
    models: Mapping[str, "CompiledModel"] | None = None,
    epoch_examples: int = 1024,
    parts: Sequence[str] = PARTS,
) -> CompareResult:
    """Compare ``backends`` (default: every available one) on ``graph`` against the NumPy reference.

    ``models`` may hold already compiled models by backend name (they are used as they are for the forward
    and gradient checks, so a test can perturb one); the others are compiled here, from the seeded initial
    weights. ``data`` defaults to the spec's training split (seeded random inputs when its data set is not
    installed). ``tolerance`` is one relative tolerance for every part, or a :class:`Tolerances`.
    ``parts`` selects among ``forward``, ``gradients`` and ``trajectory`` (the trajectory also needs
    ``steps > 0``).
    """
    from ..backends import available_backends, canonical_name

    models = dict(models or {})
    names = [canonical_name(b) for b in (backends if backends is not None else (list(models) or available_backends()))]
    from ..semantics.precision import policy_for

    tol = tolerance if isinstance(tolerance, Tolerances) else tolerances_for(policy_for(graph, dtype).name, tolerance)
    data = data if data is not None else load_data(graph)
    batch = min(int(batch or graph.train.batch_size), data.size)
    run_batches = [(np.asarray(x, dtype=dtype), y) for x, y in batches(data, batch, max(steps, 1), graph.train.seed)]
    weights = initial_weights(graph, dtype=dtype)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown comparison parts {sorted(unknown)}; expected some of {', '.join(PARTS)}")
    steps = steps if "trajectory" in parts else 0
    ref = compute_reference(graph, weights, run_batches[: max(steps, 1)], trajectory=steps > 0)

    result = CompareResult(graph.name, dtype, batch, max(steps, 0), tol, data.source, names)
    tables: dict[str, list[pd.DataFrame]] = {"forward": [], "gradients": [], "trajectory": []}
    timings: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for name in names:
        row: dict[str, Any] = {
            "backend": name,
            "status": AGREE,
            "first_forward": None,
            "first_gradient": None,
            "first_step": None,
            "argmax_agreement": np.nan,
            "message": "",
        }
        summary.append(row)
        try:
            if name in models:
                model, compile_s = models[name], float(getattr(models[name], "compile_seconds", 0.0))
            else:
                model, compile_s = _compile(name, graph, weights, device, dtype)
        except BackendError as exc:
            row.update(status=UNSUPPORTED, message=str(exc).splitlines()[0])
            continue
        checks = {"forward": compare_forward, "gradients": compare_gradients, "trajectory": compare_trajectory}
        for part, fn in checks.items():
            if part not in parts or (part == "trajectory" and steps <= 0):
                continue
            try:
                df = fn(graph, model, ref, tol)
            except Exception as exc:  # an engine that crashes is reported, not fatal to the other engines
                row.update(status=ERROR, message=f"{part}: {type(exc).__name__}: {exc}".splitlines()[0])
                row["traceback"] = traceback.format_exc()
                break
            tables[part].append(df.assign(backend=name))
            if not df["ok"].all() and row["status"] == AGREE:
                row["status"] = DISAGREE
        _summarise(row, tables, name)
        if timing and row["status"] != ERROR:
            try:
                timings.append(
                    {
                        "backend": name,
                        "device": model.device,
                        "compile_s": compile_s,
                        **time_model(
                            model,
                            data,
                            batch=min(graph.train.batch_size, data.size),
                            repeats=repeats,
                            epoch_examples=epoch_examples,
                        ),
                    }
                )
            except Exception as exc:
                row["message"] = (
                    row["message"] + "; " if row["message"] else ""
                ) + f"timing: {type(exc).__name__}: {exc}".splitlines()[0]
    for part, frames in tables.items():
        if frames:
            df = pd.concat(frames, ignore_index=True)
            setattr(result, part, df[["backend"] + [c for c in df.columns if c != "backend"]])
    result.timing = pd.DataFrame(timings)
    result.summary = pd.DataFrame(summary)
    return result


def _summarise(row: dict[str, Any], tables: Mapping[str, list[pd.DataFrame]], name: str) -> None:
    """Fill the first-over-tolerance columns of an engine's summary row."""
    for part, column, key in (
        ("forward", "layer", "first_forward"),
        ("gradients", "item", "first_gradient"),
        ("trajectory", "step", "first_step"),
    ):
        frames = [df for df in tables[part] if len(df) and df["backend"].iloc[0] == name]
        if not frames:
            continue
        df = frames[-1]
        row[key] = first_over(df, column)
        if part == "forward":
            bad = df[~df["ok"]]
            if len(bad) and bad.iloc[0]["mode"] == "training":
                row[key] = f"{row[key]} (training)"
            inference = df[df["mode"] == "inference"]
            if "argmax_agreement" in inference:
                row["argmax_agreement"] = float(inference["argmax_agreement"].dropna().iloc[-1])
