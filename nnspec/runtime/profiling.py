"""Per-layer timing across engines (``nnspec profile``): Caffe's ``caffe time``, for every engine.

For each layer (node) of a graph and each engine, two times at the spec's batch size:

* **forward**: the layer's forward pass alone, compiled the engine's way, in training mode (dropout
  masks of step 0, batch statistics and the moving-average update of batch norm), on random inputs in
  [0, 1) of the layer's real input shapes (a merge layer gets all its inputs) and the spec's initial
  weights;
* **backward**: the layer's vector-Jacobian product alone, with respect to its inputs and its trainable
  weights, for a random output cotangent in [0, 1) (the gradient of ``sum(cotangent * output)``), run on
  the residuals one forward pass saved (JAX: the jitted function ``jax.vjp`` returns; TensorFlow: the
  backward function a ``GradientTape`` runs for a ``tf.function`` call; PyTensor: ``pytensor.grad``'s
  graph compiled with the forward values it reads standing in as inputs). It is not a difference of
  two timings.

Each program is called once untimed (compilation and first-call set-up), then ``warmup`` more times
untimed, then ``repeats`` times; a cell is the median of those, each call waiting for its results. Two
reference rows come with the layers: **dispatch**, an empty layer (``x + 1`` on one number) timed the
same way, which is the cost of one call that every layer's time includes; and **step**, the engine's
whole training step (the model's ``train_step`` on one random host batch: forward, loss, backward,
optimiser update, and the loss read back). The layers' sum differs from the step: it leaves out the
loss and the update, and pays one dispatch per layer and direction where a step pays one.

The engine's part lives in ``nnspec/backends/<engine>/profile.py``, with two functions:
``layer_programs(model, node, inputs, cotangent) -> LayerPrograms`` and
``dispatch_programs(model) -> LayerPrograms`` (the contract: :mod:`nnspec.backends.profiling`). This module
chooses the inputs, runs the clock and draws the table and the chart.
"""

from __future__ import annotations

import importlib
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backends.profiling import LayerPrograms
from ..compiler.ir import Graph, Node
from ..errors import BackendError, NnspecError

if TYPE_CHECKING:
    import pandas as pd

    from ..backends.base import CompiledModel


@dataclass
class LayerTiming:
    """The forward and backward medians (seconds) of one layer on one engine, or why it could not run."""

    name: str
    op: str
    forward_s: float | None = None
    backward_s: float | None = None
    error: str | None = None


@dataclass
class EngineProfile:
    """One engine's timings: a :class:`LayerTiming` per layer, an empty layer's (``dispatch``) and the whole
    training step's (``step_s``), in seconds.

    ``skipped`` says why the engine was not profiled at all (not installed, cannot compile the spec);
    ``step_error`` why its step could not be timed. ``version`` and ``device`` are the engine's and the
    device it ran on; ``seconds`` is how long profiling it took (compilation included).
    """

    backend: str
    version: str = ""
    layers: list[LayerTiming] = field(default_factory=list)
    step_s: float | None = None
    step_error: str | None = None
    dispatch: LayerTiming | None = None
    skipped: str | None = None
    device: str = ""
    seconds: float = 0.0


@dataclass
class Profile:
    """What ``nnspec profile`` measured: the settings and one :class:`EngineProfile` per engine asked for."""

    spec: str
    graph: Graph
    batch: int
    repeats: int
    warmup: int
    device: str
    engines: list[EngineProfile]
    load_average: float | None = None

    @property
    def profiled(self) -> list[EngineProfile]:
        """The engines that were profiled (not skipped)."""
        return [e for e in self.engines if e.skipped is None]


def median_seconds(run: Callable[[], object], *, warmup: int, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``run`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def layer_inputs(graph: Graph, node: Node, batch: int, dtype: str) -> list[np.ndarray]:
    """Random inputs in [0, 1) of ``node``'s real input shapes (one per input of a merge layer), seeded
    by ``train.seed`` and the layer's index, so every engine gets the same values."""
    rng = np.random.default_rng([int(graph.train.seed), node.index])
    shapes = node.input_shapes or (node.input_shape,)
    return [rng.random((batch, *shape)).astype(dtype) for shape in shapes]


def output_cotangent(graph: Graph, node: Node, batch: int, dtype: str) -> np.ndarray:
    """A random cotangent in [0, 1) of ``node``'s output shape.

    The backward differentiates ``sum(cotangent * output)``."""
    rng = np.random.default_rng([int(graph.train.seed), node.index, 1])
    return rng.random((batch, *node.output_shape)).astype(dtype)


def step_batch(graph: Graph, batch: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """A random training batch: inputs in [0, 1) and labels among the output's classes."""
    rng = np.random.default_rng([int(graph.train.seed), 2**31 - 1])
    x = rng.random((batch, *graph.input_shape)).astype(dtype)
    y = rng.integers(0, int(graph.output_shape[-1]), size=batch).astype(np.int32)
    return x, y


def engine_module(model: CompiledModel) -> Any:
    """The ``profile`` module next to the model's backend (``nnspec.backends.<engine>.profile``)."""
    package = type(model.backend).__module__.rpartition(".")[0]
    try:
        return importlib.import_module(f"{package}.profile")
    except ModuleNotFoundError as exc:
        if exc.name != f"{package}.profile":
            raise
        raise BackendError(
            f"backend '{model.backend.name}' has no per-layer profiling ({package}.profile is missing)"
        ) from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text[:160]
    return text if isinstance(exc, NnspecError) else f"{type(exc).__name__}: {text}"


def compile_for_profile(name: str, graph: Graph, device: str) -> CompiledModel:
    """Compile ``graph`` on backend ``name`` with the spec's initial weights.

    When the backend refuses the graph because it lacks some layer, the graph is compiled without that
    check (where the engine can build it), so that the other layers are still timed and the missing one
    says why in its cell. Any other refusal (device, dtype, optimiser) stands.
    """
    from ..backends import get_backend

    backend = get_backend(name)
    try:
        return backend.compile(graph, device=device)
    except BackendError as refused:
        layers = backend.capabilities().layers
        if all(node.op in layers for node in graph.nodes):
            raise
        from ..compiler.init import initial_weights

        try:
            return backend._compile(
                graph, initial_weights(graph, dtype=graph.dtype), backend.resolve_device(device), graph.dtype
            )
        except Exception:  # noqa: BLE001 - the compile-time refusal is the clearer message
            raise refused from None


def time_programs(timing: LayerTiming, build: Callable[[], LayerPrograms], *, warmup: int, repeats: int) -> LayerTiming:
    """Fill ``timing`` with the medians of the programs ``build()`` compiles (each called once untimed first),
    or with why that failed."""
    try:
        programs = build()
        programs.forward()
        programs.backward()
        timing.forward_s = median_seconds(programs.forward, warmup=warmup, repeats=repeats)
        timing.backward_s = median_seconds(programs.backward, warmup=warmup, repeats=repeats)
    except Exception as exc:  # noqa: BLE001 - one layer an engine cannot run must not end the profile
        timing.error = _short(exc)
    return timing


def profile_layer(
    module: Any, model: CompiledModel, node: Node, batch: int, *, warmup: int, repeats: int
) -> LayerTiming:
    """Time one layer on one compiled model; an engine that cannot run it gives a timing with ``error`` set."""
    graph = model.graph

    def build() -> LayerPrograms:
        return module.layer_programs(
            model,
            node,
            layer_inputs(graph, node, batch, model.dtype),
            output_cotangent(graph, node, batch, model.dtype),
        )

    return time_programs(LayerTiming(node.name, node.op), build, warmup=warmup, repeats=repeats)


def profile_engine(name: str, graph: Graph, *, batch: int, warmup: int, repeats: int, device: str) -> EngineProfile:
    """Every layer of ``graph`` and the whole training step on backend ``name`` (skipped with the reason
    when the engine is not installed or cannot compile the spec)."""
    started = time.perf_counter()
    result = EngineProfile(name)
    try:
        model = compile_for_profile(name, graph, device)
        module = engine_module(model)
    except NnspecError as exc:
        result.skipped = str(exc)
        return result
    result.version, result.device = model.backend.engine_version(), model.device
    for node in graph.nodes:
        result.layers.append(profile_layer(module, model, node, batch, warmup=warmup, repeats=repeats))
    if hasattr(module, "dispatch_programs"):
        result.dispatch = time_programs(
            LayerTiming("dispatch", "empty layer"),
            lambda: module.dispatch_programs(model),
            warmup=warmup,
            repeats=repeats,
        )
    x, y = step_batch(graph, batch, model.dtype)
    try:
        model.train_step(x, y)  # compiles lazily on some engines: never timed
        result.step_s = median_seconds(lambda: model.train_step(x, y), warmup=warmup, repeats=repeats)
    except Exception as exc:  # noqa: BLE001 - reported in the table, like a layer's error
        result.step_error = _short(exc)
    result.seconds = time.perf_counter() - started
    return result


def check_memory(graph: Graph, batch: int | None = None) -> None:
    """Refuse, before anything is allocated, a batch whose training memory (the estimate ``nnspec run`` checks,
    :func:`nnspec.compiler.memory.require_fits`, at ``batch``, default ``train.batch_size``) exceeds the memory
    available: a :class:`~nnspec.compiler.memory.ModelTooLarge` naming the biggest layers."""
    from dataclasses import replace

    from ..compiler.memory import require_fits

    if batch is not None and batch != graph.train.batch_size:
        graph = graph.replace(train=replace(graph.train, batch_size=int(batch)))
    require_fits(graph)


def profile_spec(
    graph: Graph,
    backends: Sequence[str],
    *,
    spec: str = "",
    batch: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    device: str = "auto",
    on_engine: Callable[[EngineProfile], None] | None = None,
) -> Profile:
    """Profile ``graph`` on each of ``backends`` (canonical names) at ``batch`` (default ``train.batch_size``).

    ``on_engine`` is called after each engine (progress reports).
    """
    if repeats < 1 or warmup < 0:
        raise BackendError(f"profile: repeats must be at least 1 and warm-up at least 0 (got {repeats} and {warmup})")
    batch = int(batch or graph.train.batch_size)
    check_memory(graph, batch)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    engines = []
    for name in backends:
        engine = profile_engine(name, graph, batch=batch, warmup=warmup, repeats=repeats, device=device)
        engines.append(engine)
        if on_engine is not None:
            on_engine(engine)
    return Profile(spec or graph.name, graph, batch, repeats, warmup, device, engines, load)


# ---- the table --------------------------------------------------------------------------------------
#: The rows after the layers: the layers' sums, an empty layer's call (each layer pays it) and the whole step.
EXTRA_ROWS: tuple[tuple[str, str], ...] = (
    ("total", "sum of layers"),
    ("dispatch", "empty layer (x + 1)"),
    ("step", "whole training step"),
)


def _total(layers: Sequence[LayerTiming]) -> LayerTiming:
    fwd, bwd = [t.forward_s for t in layers], [t.backward_s for t in layers]
    return LayerTiming(
        "total",
        "",
        None if None in fwd else sum(v for v in fwd if v is not None),
        None if None in bwd else sum(v for v in bwd if v is not None),
    )


def table_rows(profile: Profile) -> list[tuple[str, str, str, dict[str, LayerTiming]]]:
    """``(layer, type, output shape, {engine: timing})`` for each layer, then the rows of :data:`EXTRA_ROWS`."""
    engines = profile.profiled
    rows = []
    for i, node in enumerate(profile.graph.nodes):
        shape = "x".join(str(d) for d in (profile.batch, *node.output_shape))
        rows.append((node.name, node.op, shape, {e.backend: e.layers[i] for e in engines}))
    (total, total_type), (dispatch, dispatch_type), (step, step_type) = EXTRA_ROWS
    rows.append((total, total_type, "", {e.backend: _total(e.layers) for e in engines}))
    rows.append(
        (
            dispatch,
            dispatch_type,
            "",
            {e.backend: e.dispatch or LayerTiming(dispatch, "", error="not measured") for e in engines},
        )
    )
    rows.append(
        (step, step_type, "", {e.backend: LayerTiming(step, "", e.step_s, None, e.step_error) for e in engines})
    )
    return rows


def _ms(seconds: float | None) -> float:
    return float("nan") if seconds is None else seconds * 1e3


def profile_frame(profile: Profile) -> pd.DataFrame:
    """The table in milliseconds: columns ``layer``, ``type``, ``output``, then ``<engine> fwd ms`` and
    ``<engine> bwd ms`` per profiled engine; one row per layer, then ``total``, ``dispatch`` and ``step`` (the
    whole training step, in the fwd column). NaN marks what was not measured."""
    import pandas as pd

    records = []
    for layer, op, shape, cells in table_rows(profile):
        record: dict[str, Any] = {"layer": layer, "type": op, "output": shape}
        for engine, t in cells.items():
            record[f"{engine} fwd ms"] = _ms(t.forward_s)
            record[f"{engine} bwd ms"] = _ms(t.backward_s)
        records.append(record)
    return pd.DataFrame(records)


def _display(t: LayerTiming, seconds: float | None, blank: bool) -> str:
    if t.error is not None:
        return "n/a"
    if seconds is None:
        return "" if blank else "-"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 100 else f"{ms:.1f}"


def display_frame(profile: Profile) -> pd.DataFrame:
    """:func:`profile_frame` as strings for reading: 3 decimals, ``n/a`` where the engine could not run it."""
    import pandas as pd

    step = EXTRA_ROWS[-1][0]
    records = []
    for layer, op, shape, cells in table_rows(profile):
        record = {"layer": layer, "type": op, "output": shape}
        for engine, t in cells.items():
            record[f"{engine} fwd ms"] = _display(t, t.forward_s, False)
            record[f"{engine} bwd ms"] = _display(t, t.backward_s, layer == step)
        records.append(record)
    return pd.DataFrame(records)


def header_lines(profile: Profile) -> list[str]:
    """What was timed, how, and on what machine."""
    engines = ", ".join(f"{e.backend} ({e.version}, {e.device})" for e in profile.profiled) or "none"
    host = f"{os.cpu_count()} CPUs" + (
        f", load average {profile.load_average:.2f} at start" if profile.load_average is not None else ""
    )
    return [
        f"spec {profile.spec}: batch {profile.batch}, training mode; engines: {engines}",
        f"milliseconds, median of {profile.repeats} calls after 1 + {profile.warmup} untimed calls; host: {host}",
        "fwd: the layer's forward alone; bwd: its vector-Jacobian product alone (w.r.t. inputs and weights), on saved "
        "residuals",
        "dispatch: an empty layer's call, which every layer's time includes; step: one whole training step (in the "
        "fwd column)",
    ]


def notes(profile: Profile) -> list[str]:
    """Engines skipped and cells that could not be measured, with the reason."""
    lines = [f"{e.backend}: skipped: {e.skipped}" for e in profile.engines if e.skipped is not None]
    for e in profile.profiled:
        lines += [f"{e.backend}: layer '{t.name}' ({t.op}): {t.error}" for t in e.layers if t.error is not None]
        if e.dispatch is not None and e.dispatch.error is not None:
            lines.append(f"{e.backend}: dispatch: {e.dispatch.error}")
        if e.step_error is not None:
            lines.append(f"{e.backend}: step: {e.step_error}")
    return lines


FORMATS: tuple[str, ...] = ("text", "md", "csv")


def render(profile: Profile, fmt: str = "text") -> str:
    """The profile as ``text`` (aligned columns), ``md`` (a Markdown document) or ``csv`` (the bare table)."""
    from ..tables import from_frame, markdown, plain_text

    if fmt not in FORMATS:
        raise BackendError(f"unknown profile format {fmt!r} (expected one of: {', '.join(FORMATS)})")
    if fmt == "csv":
        return str(profile_frame(profile).to_csv(index=False, float_format="%.6g"))
    table = display_frame(profile)
    if fmt == "md":
        lines = [
            f"# nnspec profile: {profile.spec}",
            "",
            *(f"- {h}" for h in header_lines(profile)),
            "",
            markdown(from_frame(table, numbers_right=False), level=0),
        ]
        lines += ["", *(f"- note: {n}" for n in notes(profile))] if notes(profile) else []
    else:
        lines = [*header_lines(profile), "", plain_text(from_frame(table))]
        lines += ["", *(f"note: {n}" for n in notes(profile))] if notes(profile) else []
    return "\n".join(lines) + "\n"


# ---- the chart --------------------------------------------------------------------------------------
def plot_profile(profile: Profile, path: str | os.PathLike[str], fmt: str | None = None) -> None:
    """Grouped bars: for each layer one bar per engine, forward (solid) with backward (hatched) stacked on it;
    ``fmt`` is the image format (default: from the file's suffix)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = [n.name for n in profile.graph.nodes]
    engines = profile.profiled
    width = 0.8 / max(1, len(engines))
    fig = Figure(figsize=(max(6.0, 0.9 * len(names) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    palette = colormaps["tab10"]
    colors = [palette(k % palette.N) for k in range(len(engines))]
    x = np.arange(len(names))
    for k, e in enumerate(engines):
        fwd = np.array([_ms(t.forward_s) for t in e.layers])
        bwd = np.array([_ms(t.backward_s) for t in e.layers])
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, np.nan_to_num(fwd), width, color=colors[k], edgecolor="black", linewidth=0.4)
        ax.bar(
            pos,
            np.nan_to_num(bwd),
            width,
            bottom=np.nan_to_num(fwd),
            color=colors[k],
            alpha=0.45,
            hatch="//",
            edgecolor="black",
            linewidth=0.4,
        )
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("milliseconds (median)")
    ax.set_title(f"{profile.spec}: time per layer, batch {profile.batch}")
    ax.grid(True, axis="y", alpha=0.3)
    handles = [Patch(color=colors[k], label=e.backend) for k, e in enumerate(engines)]
    handles += [
        Patch(facecolor="white", edgecolor="black", label="forward"),
        Patch(facecolor="white", edgecolor="black", hatch="//", label="backward"),
    ]
    ax.legend(handles=handles, fontsize="small")
    fig.savefig(os.fspath(path), dpi=100, format=fmt)
