"""Data sets: IDX files written here (gz and plain), npz, csv, digits, and the real Fashion-MNIST where installed."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pytest

from nnspec.compiler.ir import DataConfig, TrainConfig
from nnspec.compiler.shapes import make_graph
from nnspec.data import files as data_files
from nnspec.data import load_dataset, read_idx, write_idx, write_idx_dataset
from nnspec.errors import DataError, SpecError

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No downloads, and no data found by accident in the user's own folders."""
    monkeypatch.setenv("NNSPEC_OFFLINE", "1")
    monkeypatch.delenv("NNSPEC_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data_files, "SYSTEM_DIRS", {})


def mlp(input_shape=(28, 28, 1), data: DataConfig | None = None, seed: int = 0, units: int = 10):
    layers = ([] if len(input_shape) == 1 else ["flatten"]) + [("dense", {"units": units}), "softmax"]
    return make_graph(input_shape, layers, data=data, train=TrainConfig(seed=seed))


def fake_mnist(n_train: int = 60, n_test: int = 20, seed: int = 1):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )


# ---- IDX files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path: Path, name: str) -> None:
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, x)
    raw = (tmp_path / name).read_bytes()
    assert raw[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    back = read_idx(tmp_path / name, ndim=3)
    assert back.dtype == np.uint8 and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, x)


def test_idx_header_layout(tmp_path: Path) -> None:
    write_idx(tmp_path / "l", np.array([7, 2, 1], dtype=np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


def test_idx_truncated_data_names_path_and_sizes(tmp_path: Path) -> None:
    p = tmp_path / "train-images-idx3-ubyte"
    write_idx(p, np.zeros((4, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError) as err:
        read_idx(p, ndim=3, what="images")
    msg = str(err.value)
    assert str(p) in msg and "truncated" in msg and "(4, 28, 28)" in msg and "3136" in msg and "3036" in msg


def test_idx_bad_magic(tmp_path: Path) -> None:
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match=r"not an IDX images file: magic number 0x504b0304, expected 0x00000803") as err:
        read_idx(p, ndim=3, what="images")
    assert str(p) in str(err.value)


def test_idx_wrong_dimensions(tmp_path: Path) -> None:
    p = tmp_path / "labels.gz"
    write_idx(p, np.zeros((3, 2), np.uint8))
    with pytest.raises(DataError, match="has 2 dimensions, expected 1") as err:
        read_idx(p, ndim=1, what="labels")
    assert str(p) in str(err.value)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    p = tmp_path / "x.gz"
    write_idx(p, np.zeros((50, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(DataError, match="truncated gzip") as err:
        read_idx(p, ndim=3)
    assert str(p) in str(err.value)


def test_idx_short_header_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "short"
    p.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(p, ndim=3)
    with pytest.raises(DataError, match="no such file") as err:
        read_idx(tmp_path / "absent", ndim=3)
    assert "absent" in str(err.value)


# ---- mnist / fashion_mnist from IDX and npz -------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_folder(tmp_path: Path, gz: bool) -> None:
    arrays = fake_mnist()
    write_idx_dataset(tmp_path / "d", *arrays, gz=gz)
    ds = load_dataset(mlp(data=DataConfig("mnist", path=str(tmp_path / "d"), validation_split=0.25)))
    assert (
        ds.x_train.shape == (45, 28, 28, 1) and ds.x_val.shape == (15, 28, 28, 1) and ds.x_test.shape == (20, 28, 28, 1)
    )
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    assert ds.num_classes == 10
    # test split is the file's, in file order, scaled by 1/255
    np.testing.assert_allclose(ds.x_test[..., 0], arrays[2] / np.float32(255), rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays[3])
    # train + validation is a permutation of the training file
    seen = np.round(np.concatenate([ds.x_train, ds.x_val])[..., 0] * 255).astype(np.uint8)
    as_rows = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))  # noqa: E731
    assert as_rows(seen) == as_rows(arrays[0])


def test_validation_split_is_seeded(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, *fake_mnist())
    cfg = DataConfig("mnist", path=str(tmp_path))
    a, b, c = (load_dataset(mlp(data=cfg, seed=s)) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.y_train, c.y_train) or not np.array_equal(a.x_val, c.x_val)
    np.testing.assert_array_equal(a.x_test, c.x_test)


def test_fashion_mnist_found_in_subfolder_of_nnspec_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx_dataset(tmp_path / "store" / "fashion-mnist", *fake_mnist())
    monkeypatch.setenv("NNSPEC_DATA", str(tmp_path / "store"))
    ds = load_dataset(mlp(data=DataConfig("fashion_mnist")))
    assert ds.name == "fashion_mnist" and len(ds.x_test) == 20


def test_mnist_keras_npz_in_keras_cache(tmp_path: Path) -> None:
    xtr, ytr, xte, yte = fake_mnist()
    cache = tmp_path / "home" / ".keras" / "datasets"
    cache.mkdir(parents=True)
    np.savez(cache / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    ds = load_dataset(mlp(data=DataConfig("mnist", validation_split=0.0)))
    assert ds.x_train.shape == (60, 28, 28, 1) and len(ds.x_val) == 0
    np.testing.assert_array_equal(ds.y_test, yte)


def test_keras_npz_missing_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="missing y_train, x_test, y_test") as err:
        load_dataset(mlp(data=DataConfig("mnist", path=str(tmp_path / "mnist.npz"))))
    assert "mnist.npz" in str(err.value)


def test_label_count_mismatch_names_files(tmp_path: Path) -> None:
    xtr, ytr, xte, yte = fake_mnist()
    paths = write_idx_dataset(tmp_path, xtr, ytr[:-5], xte, yte)
    with pytest.raises(DataError, match="55 labels, but .* holds 60 images") as err:
        load_dataset(mlp(data=DataConfig("mnist", path=str(tmp_path))))
    assert paths[1] in str(err.value) and paths[0] in str(err.value)


def test_incomplete_folder_names_missing_files(tmp_path: Path) -> None:
    paths = write_idx_dataset(tmp_path, *fake_mnist())
    os.remove(paths[3])
    with pytest.raises(DataError, match=r"incomplete IDX data set: .* but not t10k-labels-idx1-ubyte\[\.gz\]") as err:
        load_dataset(mlp(data=DataConfig("mnist", path=str(tmp_path))))
    assert str(tmp_path) in str(err.value)


def test_truncated_file_in_dataset(tmp_path: Path) -> None:
    paths = write_idx_dataset(tmp_path, *fake_mnist(), gz=False)
    Path(paths[2]).write_bytes(Path(paths[2]).read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated") as err:
        load_dataset(mlp(data=DataConfig("mnist", path=str(tmp_path))))
    assert paths[2] in str(err.value)


def test_missing_dataset_offline_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(mlp(data=DataConfig("fashion_mnist")))
    msg = str(err.value)
    assert (
        ".keras" in msg and "NNSPEC_DATA" in msg and "train-images-idx3-ubyte" in msg and "dataset-fashion-mnist" in msg
    )


def test_missing_data_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder") as err:
        load_dataset(mlp(data=DataConfig("mnist", path=str(tmp_path / "nowhere"))))
    assert "nowhere" in str(err.value)


def test_relative_path_is_taken_from_the_spec_folder(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "data", *fake_mnist())
    graph = mlp(data=DataConfig("mnist", path="data")).replace(source=str(tmp_path / "spec.yaml"))
    assert len(load_dataset(graph).x_test) == 20


# ---- shape and class checks --------------------------------------------------------------------------


def test_input_shape_mismatch_is_a_positioned_spec_error(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, *fake_mnist())
    graph = mlp((784,), DataConfig("mnist", path=str(tmp_path))).replace(
        source="specs/m.yaml", positions={"input.shape": (4, 17)}
    )
    with pytest.raises(SpecError) as err:
        load_dataset(graph)
    (d,) = err.value.diagnostics
    assert (d.file, d.line, d.column, d.path, d.code) == ("specs/m.yaml", 4, 17, "input.shape", "E0505")
    assert "[784]" in d.message and "[28, 28, 1]" in d.message and "[28, 28, 1]" in (d.hint or "")
    assert d.format().startswith("specs/m.yaml:4:17: error[E0505]")


def test_more_classes_than_outputs(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, *fake_mnist())
    with pytest.raises(SpecError, match="10 classes but the model's output has 5 units"):
        load_dataset(mlp(data=DataConfig("mnist", path=str(tmp_path)), units=5))


# ---- digits -------------------------------------------------------------------------------------------


def test_digits_splits_are_deterministic() -> None:
    a = load_dataset(mlp((8, 8, 1), DataConfig("digits", validation_split=0.1, test_split=0.2)))
    b = load_dataset(mlp((8, 8, 1), DataConfig("digits", validation_split=0.1, test_split=0.2)))
    c = load_dataset(mlp((8, 8, 1), DataConfig("digits", validation_split=0.1, test_split=0.2), seed=5))
    assert a.x_train.shape[1:] == (8, 8, 1) and a.x_train.dtype == np.float32
    assert len(a.x_test) == round(1797 * 0.2) and len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797
    assert len(a.x_val) == round((1797 - len(a.x_test)) * 0.1)
    assert 0.0 <= a.x_train.min() and a.x_train.max() == 1.0  # /16
    for name in ("x_train", "y_train", "x_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.x_test, c.x_test)  # the test split does not move with train.seed
    assert not np.array_equal(a.y_val, c.y_val)
    assert set(np.unique(a.y_test)) == set(range(10))


def test_normalize_standardize_and_none() -> None:
    std = load_dataset(mlp((8, 8, 1), DataConfig("digits", normalize="standardize")))
    mean = std.x_train.mean(axis=0)
    assert np.abs(mean).max() < 1e-4
    spread = std.x_train.std(axis=0)
    assert np.all((np.abs(spread - 1) < 1e-3) | (spread == 0))
    raw = load_dataset(mlp((8, 8, 1), DataConfig("digits", normalize="none")))
    assert raw.x_train.max() == 16.0 and raw.x_train.dtype == np.float32


# ---- npz and csv ----------------------------------------------------------------------------------------


def test_npz_with_named_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 5)) * 3 + 1
    y = rng.integers(0, 3, 100)
    np.savez(tmp_path / "d.npz", feats=x, target=y)
    ds = load_dataset(
        mlp(
            (5,),
            DataConfig(
                "npz",
                path=str(tmp_path / "d.npz"),
                options={"x": "feats", "y": "target"},
                test_split=0.3,
                validation_split=0.0,
            ),
            units=3,
        )
    )
    assert ds.x_train.shape == (70, 5) and ds.x_test.shape == (30, 5) and ds.num_classes == 3
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0  # min-max scaling from the training split


def test_npz_missing_key_lists_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", a=np.zeros((4, 2)), b=np.zeros(4))
    with pytest.raises(DataError, match=r"no array named 'x', 'y' \(has: a, b\)") as err:
        load_dataset(mlp((2,), DataConfig("npz", path=str(tmp_path / "d.npz"))))
    assert "d.npz" in str(err.value)


def test_npz_refuses_pickles(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(DataError, match="no pickles"):
        load_dataset(mlp((2,), DataConfig("npz", path=str(tmp_path / "d.npz"))))


def test_npz_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"hello")
    with pytest.raises(DataError, match="d.npz"):
        load_dataset(mlp((2,), DataConfig("npz", path=str(tmp_path / "d.npz"))))


def test_csv_label_column(tmp_path: Path) -> None:
    rows = ["a,b,species"] + [f"{i},{i * 2 % 7},{['x', 'y'][i % 2]}" for i in range(50)]
    (tmp_path / "t.csv").write_text("\n".join(rows))
    ds = load_dataset(
        mlp(
            (2,),
            DataConfig("csv", path=str(tmp_path / "t.csv"), options={"label": "species"}, validation_split=0.2),
            units=2,
        )
    )
    assert ds.x_train.shape == (32, 2) and ds.x_val.shape == (8, 2) and ds.x_test.shape == (10, 2)
    assert ds.num_classes == 2 and ds.y_train.dtype == np.int32


def test_csv_errors(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    with pytest.raises(DataError, match=r"no label column 'kind' \(columns: a, b, label\)"):
        load_dataset(mlp((2,), DataConfig("csv", path=str(tmp_path / "t.csv"), options={"label": "kind"})))
    (tmp_path / "s.csv").write_text("a,b,label\n1,x,0\n3,y,1\n")
    with pytest.raises(DataError, match="not numeric: b"):
        load_dataset(mlp((2,), DataConfig("csv", path=str(tmp_path / "s.csv"))))
    with pytest.raises(DataError, match="no such file"):
        load_dataset(mlp((2,), DataConfig("csv", path=str(tmp_path / "none.csv"))))


# ---- downloads ----------------------------------------------------------------------------------------


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: _Response(b"not the real file"))
    with pytest.raises(DataError, match="SHA-256"):
        data_files.download("mnist", cache_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())  # nothing unverified is left behind


def test_download_keeps_verified_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    xtr, ytr, xte, yte = fake_mnist()
    buf = io.BytesIO()
    np.savez(buf, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    payload = buf.getvalue()
    monkeypatch.setitem(data_files.SHA256, "mnist", {"mnist.npz": hashlib.sha256(payload).hexdigest()})
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: _Response(payload))
    found = data_files.download("mnist", cache_dir=str(tmp_path))
    assert found.npz == str(tmp_path / "mnist.npz")


def test_official_sums_are_present() -> None:
    assert data_files.SHA256["fashion_mnist"]["train-images-idx3-ubyte.gz"].startswith("3aede38d")
    assert data_files.SHA256["mnist"]["mnist.npz"].startswith("731c5ac6")
    assert all(len(s) == 64 for sums in data_files.SHA256.values() for s in sums.values())


# ---- the real Fashion-MNIST --------------------------------------------------------------------------------


@pytest.mark.skipif(
    not os.path.isdir(FASHION_DIR),
    reason=f"Fashion-MNIST not installed at {FASHION_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_files, "SYSTEM_DIRS", {"fashion_mnist": (FASHION_DIR,)})
    ds = load_dataset(mlp(data=DataConfig("fashion_mnist", validation_split=0.1)))
    assert (
        ds.x_train.shape == (54000, 28, 28, 1)
        and ds.x_val.shape == (6000, 28, 28, 1)
        and ds.x_test.shape == (10000, 28, 28, 1)
    )
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_test.min() and ds.x_test.max() == 1.0
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    with gzip.open(os.path.join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz")) as f:
        assert f.read(8)[:4] == bytes([0, 0, 8, 1])
