"""Hostile data, input and weights files: each is refused with a clear error naming the file (and the first
bad index), quickly, without a traceback, a hang, a huge allocation or a silently corrupted value."""

from __future__ import annotations

import contextlib
import gzip
import os
import pathlib
import signal
import time
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from nnspec.cli import main
from nnspec.compiler.init import initial_weights
from nnspec.compiler.ir import DataConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.data import files as data_files
from nnspec.data import load_dataset, read_idx, write_idx, write_idx_dataset
from nnspec.data.safety import MAX_BYTES_ENV
from nnspec.errors import DataError, SpecError, WeightsError
from nnspec.semantics.weights import load_weights, save_weights


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No downloads, no data found by accident in the user's folders, and the default size cap."""
    monkeypatch.setenv("NNSPEC_OFFLINE", "1")
    monkeypatch.delenv("NNSPEC_DATA", raising=False)
    monkeypatch.delenv(MAX_BYTES_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data_files, "SYSTEM_DIRS", {})


@contextlib.contextmanager
def deadline(seconds: int = 10) -> Iterator[None]:
    """Fail (instead of hanging the test run) when the block takes longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"took more than {seconds} s (blocked?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def graph_for(dataset: str, path: Path | str, input_shape: tuple[int, ...] = (4,), units: int = 10, **options: object):
    layers = ([] if len(input_shape) == 1 else ["flatten"]) + [("dense", {"units": units}), "softmax"]
    return make_graph(
        input_shape,
        layers,
        data=DataConfig(dataset, path=str(path), options=dict(options), validation_split=0.0),
        train=TrainConfig(seed=0),
    )


def refused(graph, *needles: str, error: type[Exception] = DataError) -> str:
    """Load ``graph``'s data, expect ``error``, and check the message holds every needle; returns the message."""
    with deadline(), pytest.raises(error) as info:
        load_dataset(graph)
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def features(n: int = 40, d: int = 4) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)


def labels(n: int = 40) -> np.ndarray:
    return np.arange(n) % 3


# ---- 1. npz ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["x", "y"])
def test_npz_zero_d_array_is_refused(tmp_path: Path, which: str) -> None:
    arrays = {"x": features(), "y": labels()}
    arrays[which] = np.float32(3.0)
    np.savez(tmp_path / "d.npz", **arrays)
    refused(graph_for("npz", tmp_path / "d.npz"), str(tmp_path / "d.npz"), f"'{which}' is a 0-d array")


class _TouchOnLoad:
    """Unpickling this would create ``marker``: proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_npz_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pickle-ran"
    np.savez(tmp_path / "d.npz", x=np.array([_TouchOnLoad(marker)] * 40, dtype=object), y=labels())
    refused(
        graph_for("npz", tmp_path / "d.npz"), str(tmp_path / "d.npz"), "array 'x' holds Python objects", "no pickles"
    )
    assert not marker.exists()


def test_npz_member_inflating_beyond_the_cap_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    np.savez_compressed(tmp_path / "bomb.npz", x=np.zeros((20_000, 1000), np.uint8), y=np.zeros(20_000, np.int64))
    assert (tmp_path / "bomb.npz").stat().st_size < 200_000  # 20 MB of data in a small file
    monkeypatch.setenv(MAX_BYTES_ENV, str(1_000_000))
    start = time.perf_counter()
    refused(
        graph_for("npz", tmp_path / "bomb.npz", (1000,)),
        str(tmp_path / "bomb.npz"),
        "declared, over the limit",
        MAX_BYTES_ENV,
    )
    assert time.perf_counter() - start < 1.0


def npy_with_header(descr: str, shape: tuple[int, ...], data: bytes) -> bytes:
    """An .npy file whose header claims ``shape`` of ``descr``, followed by ``data`` (which may be too short)."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


def test_npy_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path: Path) -> None:
    member = npy_with_header("<f8", (1_000_000_000, 100_000), bytes(64))
    with zipfile.ZipFile(tmp_path / "lie.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", member)
        z.writestr("y.npy", member)
    refused(
        graph_for("npz", tmp_path / "lie.npz"),
        str(tmp_path / "lie.npz"),
        "array 'x' is truncated",
        "(1000000000, 100000)",
    )


def test_npz_non_finite_features_name_the_first_bad_index(tmp_path: Path) -> None:
    x = features()
    x[12, 3] = np.inf
    x[20, 0] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=labels())
    refused(graph_for("npz", tmp_path / "d.npz"), str(tmp_path / "d.npz"), "x[12, 3] = inf")
    images = np.zeros((6, 28, 28), np.float64)
    images[4, 3, 5] = 1e39  # finite in float64, infinity once converted to float32
    np.savez(
        tmp_path / "mnist.npz",
        x_train=images,
        y_train=np.zeros(6, np.uint8),
        x_test=images[:2],
        y_test=np.zeros(2, np.uint8),
    )
    refused(
        graph_for("mnist", tmp_path / "mnist.npz", (28, 28, 1)),
        str(tmp_path / "mnist.npz"),
        "x_train[4, 3, 5] = 1e+39 (too large for float32)",
    )


def test_npz_x_and_y_lengths_differ(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=features(40), y=labels(39))
    refused(
        graph_for("npz", tmp_path / "d.npz"), str(tmp_path / "d.npz"), "'x' holds 40 examples but 'y' holds 39 labels"
    )


# ---- 2. csv ---------------------------------------------------------------------------------------------


def write_csv(path: Path, cells: dict[tuple[int, int], str] | None = None, rows: int = 30) -> Path:
    lines = ["px0,px1,px2,px3,label"]
    for r in range(rows):
        row = [f"{(r * 7 + c) % 5}.5" for c in range(4)] + [str(r % 3)]
        for (rr, c), text in (cells or {}).items():
            if rr == r:
                row[c] = text
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("inf", "holds 'inf', not finite"),
        ("NaN", "holds 'NaN', not finite"),
        ("", "is empty"),
        ("1e999", "holds '1e999', too large for float32"),
    ],
)
def test_csv_non_finite_or_empty_cell_names_row_and_column(tmp_path: Path, text: str, says: str) -> None:
    path = write_csv(tmp_path / "t.csv", {(16, 3): text, (20, 1): "nan"})
    refused(graph_for("csv", path), str(path), f"row 17 column 'px3' {says}")


def test_csv_unparseable_cell_names_row_and_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", {(8, 2): "12,5".replace(",", ";"), (9, 0): "abc"})
    refused(graph_for("csv", path), str(path), "not numeric: px0, px2", "row 9 column 'px2' holds '12;5', not a number")


def test_csv_empty_file_and_header_only(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    refused(graph_for("csv", tmp_path / "empty.csv"), str(tmp_path / "empty.csv"), "empty file")
    (tmp_path / "blank.csv").write_text("\n\n")
    refused(graph_for("csv", tmp_path / "blank.csv"), str(tmp_path / "blank.csv"), "empty CSV file")
    (tmp_path / "header.csv").write_text("px0,px1,label\n")
    refused(graph_for("csv", tmp_path / "header.csv"), str(tmp_path / "header.csv"), "no data rows")


def test_csv_numbers_with_thousands_of_digits(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", {(4, 1): "9" * 5000})
    refused(graph_for("csv", path), str(path), "row 5 column 'px1' holds '99999", "too large for float32")
    path = write_csv(tmp_path / "labels.csv", {(2, 4): "7" * 400})
    refused(graph_for("csv", path), str(path), "row 3 column 'label' is 777", "not a class index")


# ---- 3. IDX ---------------------------------------------------------------------------------------------


def idx_header(code: int, shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape)


def gzip_bomb(head: bytes, megabytes: int) -> bytes:
    """``head`` then ``megabytes`` MB of zeros, as gzip members (one 1 MB member repeated: cheap to make)."""
    return gzip.compress(head) + gzip.compress(bytes(1_000_000), compresslevel=9) * megabytes


def test_idx_header_claiming_billions_of_examples_is_refused_before_allocating(tmp_path: Path) -> None:
    plain = tmp_path / "train-images-idx3-ubyte"
    plain.write_bytes(idx_header(0x08, (4_000_000_000, 28, 28)) + bytes(784 * 3))
    with deadline(), pytest.raises(DataError, match=r"truncated: header says shape \(4000000000, 28, 28\)") as err:
        read_idx(plain, ndim=3, what="images")
    assert str(plain) in str(err.value)
    packed = tmp_path / "train-images-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(idx_header(0x08, (4_000_000_000, 4096, 4096)) + bytes(100)))
    with deadline(), pytest.raises(DataError, match="declared, over the limit") as err:
        read_idx(packed, ndim=3, what="images")
    assert str(packed) in str(err.value) and "(4000000000, 4096, 4096)" in str(err.value)


def test_idx_declared_size_beyond_available_memory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_BYTES_ENV, str(2**62))
    packed = tmp_path / "x.gz"
    packed.write_bytes(gzip.compress(idx_header(0x0E, (2**31, 2**20, 2**3)) + bytes(100)))  # 2**57 bytes
    with deadline(), pytest.raises(DataError, match="of memory is available") as err:
        read_idx(packed, ndim=3)
    assert str(packed) in str(err.value)


def test_idx_gz_inflating_beyond_its_header_stops_early(tmp_path: Path) -> None:
    packed = tmp_path / "x.gz"
    packed.write_bytes(gzip_bomb(idx_header(0x08, (2, 28, 28)) + bytes(2 * 28 * 28), 200))
    assert packed.stat().st_size < 1_000_000
    start = time.perf_counter()
    with deadline(), pytest.raises(DataError, match=r"too long: header says shape \(2, 28, 28\)") as err:
        read_idx(packed, ndim=3)
    assert time.perf_counter() - start < 0.5  # not 200 MB inflated
    assert str(packed) in str(err.value)


def test_idx_gz_bomb_over_the_cap_is_refused_before_inflating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packed = tmp_path / "x.gz"
    packed.write_bytes(gzip_bomb(idx_header(0x08, (100, 1000, 1000)), 100))
    monkeypatch.setenv(MAX_BYTES_ENV, str(10_000_000))
    start = time.perf_counter()
    with deadline(), pytest.raises(DataError, match="100000000 bytes\\) declared, over the limit") as err:
        read_idx(packed, ndim=3)
    assert time.perf_counter() - start < 0.5 and str(packed) in str(err.value)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_inside_the_data(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / ("x.gz" if gz else "x")
    payload = (
        idx_header(0x08, (50, 28, 28)) + np.random.default_rng(0).integers(0, 255, 50 * 784, dtype=np.uint8).tobytes()
    )
    data = gzip.compress(payload) if gz else payload
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path, ndim=3)
    assert str(path) in str(err.value)


def test_idx_non_finite_floats_name_the_first_bad_index(tmp_path: Path) -> None:
    xtr = np.random.default_rng(0).random((8, 28, 28)).astype(np.float32)
    xtr[5, 27, 3] = -np.inf
    xtr[6, 0, 0] = np.nan
    ylab = np.zeros(8, np.uint8)
    paths = write_idx_dataset(tmp_path, xtr, ylab, xtr[:2] * 0, ylab[:2])
    refused(graph_for("mnist", tmp_path, (28, 28, 1)), paths[0], "images[5, 27, 3] = -inf")


# ---- 4. labels ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (np.int64(-1), "y[17] is -1, negative"),
        (np.int64(2**31), "y[17] is 2147483648, beyond the largest class index"),
        (np.uint64(2**64 - 1), "y[17] is 18446744073709551615, beyond"),
        (np.float64(3.7), "y[17] is 3.7, not a whole number"),
        (np.float64(np.nan), "y[17] is nan, not finite"),
    ],
)
def test_labels_that_would_wrap_or_truncate_are_refused(tmp_path: Path, bad: np.generic, says: str) -> None:
    y = labels().astype(bad.dtype)
    y[17] = bad
    np.savez(tmp_path / "d.npz", x=features(), y=y)
    refused(graph_for("npz", tmp_path / "d.npz"), str(tmp_path / "d.npz"), says)


def test_negative_idx_labels_name_the_labels_file(tmp_path: Path) -> None:
    images = np.zeros((10, 28, 28), np.uint8)
    y = np.arange(10, dtype=np.int32) % 10
    y[7] = -3
    paths = write_idx_dataset(tmp_path, images, y, images[:4], y[:4], gz=False)
    refused(graph_for("mnist", tmp_path, (28, 28, 1)), paths[1], "labels[7] is -3, negative")


def test_label_beyond_the_models_outputs_names_file_and_index(tmp_path: Path) -> None:
    y = labels()
    y[23] = 12
    np.savez(tmp_path / "d.npz", x=features(), y=y)
    message = refused(
        graph_for("npz", tmp_path / "d.npz", units=3), "13 classes but the model's output has 3 units", error=SpecError
    )
    assert f"{tmp_path / 'd.npz'}: y[23] is 12" in message


def test_csv_text_label_missing_is_refused_not_minus_one(tmp_path: Path) -> None:
    lines = ["a,b,kind"] + [f"{i},{i % 4},{'xy'[i % 2]}" for i in range(30)]
    lines[11] = "10,2,"
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    refused(
        graph_for("csv", tmp_path / "t.csv", (2,), label="kind"),
        str(tmp_path / "t.csv"),
        "row 11 column 'kind' is empty",
    )


# ---- 5. paths -------------------------------------------------------------------------------------------


def special_path(tmp_path: Path, kind: str) -> tuple[str, str]:
    """A path of ``kind`` and the words the error must hold."""
    if kind == "folder":
        (tmp_path / "d.npz").mkdir()
        return str(tmp_path / "d.npz"), "is a folder"
    if kind == "fifo":
        os.mkfifo(tmp_path / "d.npz")
        return str(tmp_path / "d.npz"), "is a FIFO"
    if kind == "device":
        return "/dev/null", "is a character device"
    if kind == "missing":
        return str(tmp_path / "absent.npz"), "no such file"
    return str(tmp_path / "a\0b.npz"), "contains a NUL byte"


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "missing", "nul"])
@pytest.mark.parametrize("dataset", ["npz", "csv"])
def test_data_file_that_is_not_a_regular_file(tmp_path: Path, kind: str, dataset: str) -> None:
    path, says = special_path(tmp_path, kind)
    message = refused(graph_for(dataset, path), says)
    assert path.replace("\0", "\\0") in message and "\0" not in message


@pytest.mark.parametrize("kind", ["fifo", "device", "nul"])
def test_mnist_data_path_that_is_not_a_file_or_folder(tmp_path: Path, kind: str) -> None:
    path, _ = special_path(tmp_path, kind)
    says = "contains a NUL byte" if kind == "nul" else "is not a regular file or folder"
    refused(graph_for("mnist", path, (28, 28, 1)), says, path.replace("\0", "\\0"))


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as an unprivileged user when the tests run as root (root ignores file modes)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_permission_denied_is_a_data_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=features(), y=labels())
    (tmp_path / "d.npz").chmod(0)
    graph = graph_for("npz", tmp_path / "d.npz")
    try:
        with unprivileged():
            refused(graph, str(tmp_path / "d.npz"), "permission denied")
    finally:
        (tmp_path / "d.npz").chmod(0o644)


# ---- 6. weights files -----------------------------------------------------------------------------------


def tiny_graph():
    return make_graph((4,), [("dense", {"units": 3}), "softmax"])


def test_weights_file_damaged_truncated_or_lying(tmp_path: Path) -> None:
    graph = tiny_graph()
    good = tmp_path / "good.safetensors"
    save_weights(good, initial_weights(graph, seed=0), graph)
    raw = good.read_bytes()
    cases = {
        "garbage": b"not a safetensors file at all",
        "truncated": raw[: len(raw) - 7],
        "lying": raw[:8] + raw[8:].replace(b'"shape":[4,3]', b'"shape":[9,3]'),
        "huge-header": (2**62).to_bytes(8, "little") + raw[8:],
    }
    assert b'"shape":[4,3]' in raw
    for name, data in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(WeightsError, match="not a readable safetensors file") as err:
            load_weights(path, graph)
        assert str(path) in str(err.value), name
    with pytest.raises(WeightsError, match="is a folder"):
        load_weights(tmp_path, graph)


def test_weights_with_nan_or_integer_dtype_are_refused(tmp_path: Path) -> None:
    graph = tiny_graph()
    weights = initial_weights(graph, seed=0)
    weights["dense_1.kernel"][2, 1] = np.nan
    save_weights(tmp_path / "nan.safetensors", weights, graph)
    with pytest.raises(WeightsError) as err:
        load_weights(tmp_path / "nan.safetensors", graph)
    assert str(tmp_path / "nan.safetensors") in str(err.value) and "dense_1.kernel[2, 1] = nan" in str(err.value)
    for dtype in (np.int32, np.bool_):
        ints = {k: v.astype(dtype) for k, v in initial_weights(graph, seed=0).items()}
        save_weights(tmp_path / "int.safetensors", ints, graph)
        with pytest.raises(
            WeightsError, match=f"'dense_1.bias' has dtype {np.dtype(dtype)}; weights must be floating point"
        ):
            load_weights(tmp_path / "int.safetensors", graph)
        with pytest.raises(WeightsError, match="must be floating point"):
            load_weights(tmp_path / "int.safetensors")  # without a spec too


# ---- 7. predict and evaluate on the command line (JAX) ---------------------------------------------------

SPEC = """\
nnspec: 1
name: tiny
input: {shape: [4]}
layers:
  - dense: {units: 3}
  - softmax
data: {dataset: npz, path: d.npz}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """A spec file and a weights file for it."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    graph = tiny_graph()
    weights = tmp_path / "w.safetensors"
    save_weights(weights, initial_weights(graph, seed=0), graph)
    return spec, weights


def cli_fails(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    with deadline(60):
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


@pytest.mark.parametrize(
    ("array", "says"),
    [
        (np.float32(1.0), "holds a 0-d array"),
        (np.array([{"a": 1}] * 3, dtype=object), "no pickles"),
        (np.array([[0.0, 1.0, np.nan, 2.0], [1.0, 1.0, 1.0, 1.0]], np.float32), "x[0, 2] = nan"),
        (np.zeros((2, 5), np.float32), "examples have shape [5]"),
        (np.zeros((0, 4), np.float32), "holds no examples"),
    ],
)
def test_predict_refuses_bad_inputs(
    tmp_path: Path, tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str], array: np.ndarray, says: str
) -> None:
    spec, weights = tiny
    np.save(tmp_path / "x.npy", array, allow_pickle=True)
    cli_fails(
        capsys, ["predict", str(spec), "-w", str(weights), "-i", str(tmp_path / "x.npy")], str(tmp_path / "x.npy"), says
    )


def test_predict_refuses_an_npy_header_claiming_a_huge_array(
    tmp_path: Path, tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, weights = tiny
    (tmp_path / "x.npy").write_bytes(npy_with_header("<f4", (10**12, 4), bytes(32)))
    cli_fails(
        capsys,
        ["predict", str(spec), "-w", str(weights), "-i", str(tmp_path / "x.npy")],
        str(tmp_path / "x.npy"),
        "truncated",
        "(1000000000000, 4)",
    )


@pytest.mark.parametrize("target", ["missing-folder", "folder"])
def test_predict_output_problems_are_found_before_anything_runs(
    tmp_path: Path, tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str], target: str
) -> None:
    spec, _ = tiny
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    out = tmp_path / "nowhere" / "p.npy" if target == "missing-folder" else tmp_path
    says = f"the folder {tmp_path / 'nowhere'} does not exist" if target == "missing-folder" else "is a folder"
    # the weights file does not exist: the output check comes first, before the input, weights or engine
    err = cli_fails(
        capsys,
        [
            "predict",
            str(spec),
            "-w",
            str(tmp_path / "absent.safetensors"),
            "-i",
            str(tmp_path / "x.npy"),
            "-o",
            str(out),
        ],
        says,
    )
    assert "absent.safetensors" not in err
    assert not (tmp_path / "nowhere").exists()


def test_predict_writes_its_output_atomically(
    tmp_path: Path, tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, weights = tiny
    np.save(tmp_path / "x.npy", features(5))
    out = tmp_path / "out" / "p"
    out.parent.mkdir()
    out.write_bytes(b"previous contents")
    assert (
        main(
            [
                "predict",
                str(spec),
                "-w",
                str(weights),
                "-i",
                str(tmp_path / "x.npy"),
                "-o",
                str(out),
                "--backend",
                "jax",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    probs = np.load(out)  # written to exactly the path given (no .npy appended), replacing the old file
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["p"]  # no temporary file left behind


def test_evaluate_refuses_nan_weights_and_bad_data(
    tmp_path: Path, tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, weights = tiny
    graph = tiny_graph()
    nan = initial_weights(graph, seed=0)
    nan["dense_1.bias"][1] = np.inf
    save_weights(tmp_path / "nan.safetensors", nan, graph)
    cli_fails(
        capsys,
        ["evaluate", str(spec), "-w", str(tmp_path / "nan.safetensors")],
        str(tmp_path / "nan.safetensors"),
        "dense_1.bias[1] = inf",
    )
    x = features()
    x[3, 1] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=labels())
    cli_fails(capsys, ["evaluate", str(spec), "-w", str(weights)], str(tmp_path / "d.npz"), "x[3, 1] = nan")


# ---- every reader, on randomly damaged files ---------------------------------------------------------


def _damage(data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` with a few random byte changes, insertions, cuts or planted 32-bit sizes."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        op, at = rng.random(), int(rng.integers(0, len(out) + 1))
        if op < 0.45 and out:
            out[min(at, len(out) - 1)] = int(rng.integers(0, 256))
        elif op < 0.65:
            del out[at:]
        elif op < 0.8:
            out[at:at] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        else:
            out[at : at + 4] = [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", bytes(4)][
                int(rng.integers(0, 4))
            ]
    return bytes(out)


def test_randomly_damaged_files_raise_only_nnspec_errors(tmp_path: Path) -> None:
    from nnspec.data.arrays import NpzFile, read_npy
    from nnspec.data.table import read_csv_table
    from nnspec.errors import NnspecError

    def read_npz(path: Path) -> None:
        with NpzFile(path) as archive:
            archive.read(archive.names)

    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "i", images)
    write_idx(tmp_path / "i.gz", images)
    write_idx(tmp_path / "f", images.astype(np.float32))
    np.save(tmp_path / "x.npy", images.astype(np.float32))
    np.savez_compressed(tmp_path / "z.npz", x=images, y=np.arange(2))
    write_csv(tmp_path / "t.csv", rows=4)
    graph = tiny_graph()
    save_weights(tmp_path / "w.safetensors", initial_weights(graph, seed=0), graph)
    readers = {
        "i": read_idx,
        "i.gz": read_idx,
        "f": read_idx,
        "x.npy": read_npy,
        "z.npz": read_npz,
        "t.csv": lambda p: read_csv_table(p, "label"),
        "w.safetensors": load_weights,
    }
    rng = np.random.default_rng(11)
    outcomes = {"read": 0, "refused": 0}
    with deadline(30):
        for name, read in readers.items():
            original = (tmp_path / name).read_bytes()
            for _ in range(60):
                damaged = tmp_path / f"damaged-{name}"
                damaged.write_bytes(_damage(original, rng))
                try:
                    read(damaged)
                    outcomes["read"] += 1
                except NnspecError as exc:
                    assert str(damaged) in str(exc)
                    outcomes["refused"] += 1
    assert outcomes["refused"] > 300 and outcomes["read"] + outcomes["refused"] == 60 * len(readers)


def test_evaluate_json_stays_valid_when_the_loss_is_not_finite(
    tmp_path: Path, tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    spec, _ = tiny
    graph = tiny_graph()
    huge = {
        k: np.full(v.shape, 3e38, np.float32) for k, v in initial_weights(graph, seed=0).items()
    }  # finite, but overflows
    save_weights(tmp_path / "huge.safetensors", huge, graph)
    np.savez(tmp_path / "d.npz", x=np.abs(features()) + 1, y=labels())
    with deadline(60):
        assert (
            main(
                [
                    "evaluate",
                    str(spec),
                    "-w",
                    str(tmp_path / "huge.safetensors"),
                    "--json",
                    "--backend",
                    "jax",
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
    result = json.loads(capsys.readouterr().out, parse_constant=lambda token: pytest.fail(f"{token} in JSON output"))
    assert result["loss"] is None and result["examples"] == 8
