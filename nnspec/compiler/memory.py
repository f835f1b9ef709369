"""Memory a model needs to train, estimated from its graph before anything is allocated.

For one batch (``train.batch_size``) in the model's float type, training holds:

* **weights**: every parameter and state array (``Graph.num_params`` values);
* **gradients**: one array per trainable parameter;
* **optimiser slots**: per trainable parameter, as many arrays as the optimiser keeps
  (:func:`nnspec.compiler.training_defaults.slot_names`: adam 2, sgd with momentum 1, rmsprop 1 or 2);
* **activations**: every layer's output for the whole batch, twice (the forward value kept for the
  backward pass, and its gradient), plus the input batch itself.

The estimate is a floor, not a measure: engines add workspace and fuse or rematerialise some outputs. It
is computed with Python integers from shapes alone (never an array), so it works for any model a spec can
describe. :func:`memory_limit` is the memory available now (``MemAvailable`` of ``/proc/meminfo``, else
``os.sysconf``; a cgroup limit or a process limit, ``ulimit -v`` / ``ulimit -d``, when lower), or
``NNSPEC_MEMORY_LIMIT`` when set. ``nnspec check`` and
``nnspec summary`` warn (:func:`memory_diagnostic`) and ``nnspec run`` refuses (:func:`require_fits`) a
model whose estimate exceeds it, naming the biggest layers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import Diagnostic, NnspecError
from .ir import Graph
from .training_defaults import slot_names

#: Environment variable that sets the memory limit (bytes, or a size such as ``8G`` or ``512MB``).
LIMIT_ENV = "NNSPEC_MEMORY_LIMIT"
#: Code of the warning printed by ``check`` and ``summary`` for a model over the limit.
TOO_BIG = "W0801"
#: Bytes per value of each float type.
ITEMSIZE: dict[str, int] = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
#: How many of the biggest layers a warning names.
NAMED_LAYERS = 3

_SIZE = re.compile(r"^\s*([0-9]{1,20}(?:\.[0-9]{0,20})?)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


class ModelTooLarge(NnspecError):
    """The model's estimated training memory exceeds the memory available; ``estimate`` holds the figures."""

    def __init__(self, message: str, estimate: "MemoryEstimate"):
        super().__init__(message)
        self.estimate = estimate


@dataclass(frozen=True)
class LayerMemory:
    """Bytes one layer takes in training: its arrays, their gradients and optimiser slots, and its outputs."""

    index: int
    name: str
    op: str
    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        """All the bytes of this layer."""
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def label(self) -> str:
        """``layers[i] 'name' (op)``, the way messages name a layer."""
        return f"layers[{self.index}] {self.name!r} ({self.op})"


@dataclass(frozen=True)
class MemoryEstimate:
    """The training memory of a model for one batch, in bytes, in all and per layer."""

    batch_size: int
    dtype: str
    itemsize: int
    optimizer: str
    slots: int
    input: int
    layers: tuple[LayerMemory, ...]

    @property
    def weights(self) -> int:
        """Bytes of the parameters and state arrays."""
        return sum(layer.weights for layer in self.layers)

    @property
    def gradients(self) -> int:
        """Bytes of the gradients of the trainable parameters."""
        return sum(layer.gradients for layer in self.layers)

    @property
    def optimizer_slots(self) -> int:
        """Bytes of the optimiser's slots."""
        return sum(layer.optimizer for layer in self.layers)

    @property
    def activations(self) -> int:
        """Bytes of the layers' outputs for one batch, forward and backward, and of the input batch."""
        return self.input + sum(layer.activations for layer in self.layers)

    @property
    def total(self) -> int:
        """All the bytes the estimate counts."""
        return self.weights + self.gradients + self.optimizer_slots + self.activations

    def biggest(self, count: int = NAMED_LAYERS) -> list[LayerMemory]:
        """The ``count`` layers that take the most memory, biggest first (ties in layer order)."""
        return sorted(self.layers, key=lambda layer: (-layer.total, layer.index))[:count]

    def describe(self) -> str:
        """One line: the total and its parts, e.g. ``about 1.2 MiB (weights 138.4 KiB, ...)``."""
        slots = f"{self.optimizer}, {self.slots} slot{'' if self.slots == 1 else 's'}"
        return (
            f"about {format_bytes(self.total)} to train on one batch of {self.batch_size:,} in {self.dtype} "
            f"(weights {format_bytes(self.weights)}, gradients {format_bytes(self.gradients)}, "
            f"optimiser {format_bytes(self.optimizer_slots)} ({slots}), activations {format_bytes(self.activations)})"
        )


def estimate(graph: Graph, *, batch_size: int | None = None, dtype: str | None = None) -> MemoryEstimate:
    """The training memory of ``graph`` for one batch (default ``train.batch_size``) in ``dtype`` (default the
    graph's)."""
    batch = graph.train.batch_size if batch_size is None else batch_size
    kind = dtype or graph.dtype
    itemsize = ITEMSIZE.get(kind, 4)
    slots = len(slot_names(graph.train.optimizer))
    layers = []
    for node in graph.nodes:
        trainable = node.num_trainable * itemsize
        output = _size(node.output_shape) * batch * itemsize
        layers.append(
            LayerMemory(
                node.index, node.name, node.op, node.num_params * itemsize, trainable, trainable * slots, 2 * output
            )
        )
    return MemoryEstimate(
        batch,
        kind,
        itemsize,
        graph.train.optimizer.name,
        slots,
        _size(graph.input_shape) * batch * itemsize,
        tuple(layers),
    )


def _size(shape: tuple[int, ...]) -> int:
    total = 1
    for length in shape:
        total *= length
    return total


def format_bytes(count: int) -> str:
    """``count`` bytes in binary units: ``512 B``, ``1.5 KiB``, ``37.3 GiB``."""
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{count:,} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """Bytes from ``1000000``, ``8G``/``8GiB`` (powers of 1024) or ``8GB`` (powers of 1000); raises ValueError."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number, prefix, binary, unit_b = match.groups()
    power = "kmgtp".find(prefix.lower()) + 1 if prefix else 0
    base = 1000 if unit_b and not binary and prefix else 1024
    if binary and not prefix:
        raise ValueError(f"not a size: {text!r}")
    return int(float(number) * base**power)


def available_memory() -> tuple[int | None, str]:
    """``(bytes, where from)``: the memory available now, or ``(None, reason)`` when it cannot be read.

    The smallest of: ``MemAvailable`` of ``/proc/meminfo`` (else ``os.sysconf``), the room left under a cgroup
    memory limit, and the room left under this process's address-space or data limit (``ulimit -v``, ``ulimit -d``;
    ``RLIMIT_AS`` / ``RLIMIT_DATA`` less what the process already maps).
    """
    found, source = _system_available()
    for room, what in (_cgroup_room(), "the cgroup memory limit"), *_rlimit_rooms():
        if room is not None and (found is None or room < found):
            found, source = room, what
    if found is None:
        return None, "the available memory could not be read"
    return found, source


def _system_available() -> tuple[int | None, str]:
    """``MemAvailable`` of ``/proc/meminfo``, else free pages from ``os.sysconf``; ``(None, ...)`` when neither."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "os.sysconf"
    except (OSError, ValueError, AttributeError):
        return None, "unknown"


#: Process limits the memory check reads: (``resource`` name, the ``/proc/self/status`` line of what counts, words).
_RLIMITS: tuple[tuple[str, str, str], ...] = (
    ("RLIMIT_AS", "VmSize:", "the address-space limit (ulimit -v)"),
    ("RLIMIT_DATA", "VmData:", "the data-segment limit (ulimit -d)"),
)


def _rlimit_rooms() -> list[tuple[int | None, str]]:
    """``[(room, words)]``: bytes left under each finite process limit of :data:`_RLIMITS` (limit less use)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return []
    rooms: list[tuple[int | None, str]] = []
    for name, status_line, words in _RLIMITS:
        which = getattr(resource, name, None)
        if which is None:
            continue
        try:
            soft = resource.getrlimit(which)[0]
        except (OSError, ValueError):
            continue
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        rooms.append((max(soft - _process_usage(status_line), 0), words))
    return rooms


def _process_usage(status_line: str) -> int:
    """Bytes on ``status_line`` (``VmSize:``, ``VmData:``) of ``/proc/self/status``; 0 when it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(status_line):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cgroup_room() -> int | None:
    """Room left under this process's cgroup memory limit (v2 or v1), or None when there is no limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            with open(limit_file, encoding="ascii") as handle:
                limit_text = handle.read().strip()
            if not limit_text.isdigit():
                return None
            with open(usage_file, encoding="ascii") as handle:
                usage = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        limit = int(limit_text)
        return None if limit >= 1 << 60 else max(limit - usage, 0)
    return None


def memory_limit() -> tuple[int | None, str]:
    """``(bytes, where from)``: ``NNSPEC_MEMORY_LIMIT`` when set, else :func:`available_memory`.

    Raises :class:`~nnspec.errors.NnspecError` when ``NNSPEC_MEMORY_LIMIT`` is not a positive size.
    """
    text = os.environ.get(LIMIT_ENV)
    if text is None or not text.strip():
        return available_memory()
    try:
        limit = parse_size(text)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise NnspecError(
            f"{LIMIT_ENV}={text[:40]!r} is not a memory size; give bytes (8000000000) or a size such as 8G or 512M"
        )
    return limit, LIMIT_ENV


def fit_message(graph: Graph, limit: int | None = None, source: str | None = None) -> str | None:
    """Why ``graph`` cannot train in ``limit`` bytes (default :func:`memory_limit`), naming its biggest layers.

    None when it fits, or when no limit is known.
    """
    found = estimate(graph)
    return _over(found, *_limit(limit, source))


def _limit(limit: int | None, source: str | None) -> tuple[int | None, str]:
    return memory_limit() if limit is None else (limit, source or "the limit")


def _over(found: MemoryEstimate, limit: int | None, source: str) -> str | None:
    if limit is None or found.total <= limit:
        return None
    biggest = ", ".join(f"{layer.label} {format_bytes(layer.total)}" for layer in found.biggest() if layer.total)
    return (
        f"the model needs {found.describe()}, more than the {format_bytes(limit)} available ({source}); "
        f"biggest layers: {biggest or 'none'}"
    )


_HINT = (
    f"use fewer units or filters in the biggest layers, or a smaller train.batch_size; {LIMIT_ENV}=<bytes> sets the "
    "limit"
)


def memory_diagnostic(graph: Graph, limit: int | None = None, source: str | None = None) -> Diagnostic | None:
    """A warning (``W0801``) at the biggest layer when ``graph`` does not fit in memory (see :func:`fit_message`); None
    when it fits."""
    found = estimate(graph)
    message = _over(found, *_limit(limit, source))
    if message is None:
        return None
    top = found.biggest(1)
    line, column = graph.positions.get(f"layers[{top[0].index}]", (None, None)) if top else (None, None)
    return Diagnostic(TOO_BIG, message, graph.source, line, column, hint=_HINT, severity="warning")


def require_fits(graph: Graph, *, limit: int | None = None, source: str | None = None) -> MemoryEstimate:
    """The estimate of ``graph``; raises :class:`ModelTooLarge` (an ``NnspecError``) naming the biggest layers when it
    does not fit.

    ``limit`` is in bytes (default :func:`memory_limit`); with no known limit the model is accepted.
    """
    found = estimate(graph)
    message = _over(found, *_limit(limit, source))
    if message is not None:
        raise ModelTooLarge(f"{message}; nothing was allocated. Hint: {_HINT}", found)
    return found
