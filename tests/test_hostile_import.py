"""``nnspec import`` of hostile files: every class of bad input is a clear error (exit 1) naming the file and,
where it can, the member, the config path or the weight, and a failed import leaves no file behind.

The files are real: a ``.keras`` archive written by ``nnspec export``, taken apart and rebuilt with
``zipfile`` and ``h5py``, and run through the real command line.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import signal
import struct
import zipfile
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import pytest

import nnspec
from nnspec.cli import main
from nnspec.interop import KerasImportError
from nnspec.interop.keras_import import import_keras
from nnspec.interop.keras_import_output import write_spec

SPEC = """\
nnspec: 1.1
name: hostile-base
input: {shape: [6]}
layers:
  - dense: {units: 5, activation: relu, name: hidden}
  - batch_norm: {name: bn}
  - dense: {units: 3, name: logits}
  - softmax
"""
#: Where the exported file keeps these weights (Keras names a layer's group after its class).
HIDDEN_KERNEL, BN_VARIANCE, LOGITS_KERNEL = (
    "layers/dense/vars/0",
    "layers/batch_normalization/vars/3",
    "layers/dense_1/vars/0",
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real .keras file written by ``nnspec export``, and its members."""
    folder = tmp_path_factory.mktemp("base")
    (folder / "base.yaml").write_text(SPEC)
    path = folder / "base.keras"
    assert main(["export", str(folder / "base.yaml"), str(path)]) == 0
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    return {"path": path, "members": members, "config": json.loads(members["config.json"])}


def archive(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    """Write a zip file of ``members``."""
    with zipfile.ZipFile(path, "w", method) as out:
        for name, data in members.items():
            out.writestr(name, data)
    return path


def with_members(base: dict[str, Any], path: Path, **changes: bytes | None) -> Path:
    """The base archive with members replaced (``None`` drops one); keyword ``weights`` is model.weights.h5."""
    members = dict(base["members"])
    for key, data in changes.items():
        name = {"weights": "model.weights.h5", "config": "config.json"}.get(key, key)
        if data is None:
            members.pop(name)
        else:
            members[name] = data
    return archive(path, members)


def edited_weights(base: dict[str, Any], dataset: str, value: float | None = None, dtype: str | None = None) -> bytes:
    """model.weights.h5 of the base archive with one dataset changed: one value set, or its dtype."""
    buffer = io.BytesIO(base["members"]["model.weights.h5"])
    with h5py.File(buffer, "r+") as h5:
        array = np.array(h5[dataset][()])
        if value is not None:
            array.flat[1] = value
        del h5[dataset]
        h5.create_dataset(dataset, data=array.astype(dtype) if dtype else array)
    return buffer.getvalue()


def set_declared_size(path: Path, member: str, size: int) -> None:
    """Forge the uncompressed size ``member`` declares in the zip's central directory (and local header)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    central = struct.unpack_from("<I", data, data.rindex(b"PK\x05\x06") + 16)[0]  # the central directory's offset
    while True:
        length = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + length] == name:
            break
        extra, comment = struct.unpack_from("<HH", data, central + 30)
        central += 46 + length + extra + comment
    struct.pack_into("<I", data, central + 24, size)
    local = struct.unpack_from("<I", data, central + 42)[0]
    struct.pack_into("<I", data, local + 22, size)
    path.write_bytes(bytes(data))


def run_import(
    capsys: pytest.CaptureFixture[str], model: Path | str, out: Path, *extra: str, weights: bool = True
) -> tuple[int, str]:
    """Run ``nnspec import MODEL -o OUT/spec.yaml [--weights-out OUT/w.safetensors]``; returns (exit code, stderr)."""
    out.mkdir(exist_ok=True)
    argv = [
        "import",
        str(model),
        "-o",
        str(out / "spec.yaml"),
        *(["--weights-out", str(out / "w.safetensors")] if weights else []),
        *extra,
    ]
    with deadline(60):
        code = main(argv)
    return code, capsys.readouterr().err


def refused(capsys: pytest.CaptureFixture[str], model: Path, out: Path, *, weights: bool = True) -> str:
    """Import ``model``, expecting a clear error that names it and leaves ``out`` empty; returns the message."""
    code, err = run_import(capsys, model, out, weights=weights)
    assert code == (2 if "layers cannot be imported" in err else 1), err  # a layer nnspec cannot import: as a spec error
    assert (
        err.startswith(f"nnspec import: error: {model}") and "internal error" not in err and "Traceback" not in err
    ), err
    assert list(out.iterdir()) == [], "a failed import left files behind"
    return err


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the test run) if the block takes longer than ``seconds``."""

    def expire(*_: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s: an infinite loop?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---- the valid baseline ---------------------------------------------------------------------------------
def test_the_exported_file_imports_and_leaves_only_its_outputs(base, tmp_path, capsys) -> None:
    code, err = run_import(capsys, base["path"], tmp_path / "out")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["spec.yaml", "w.safetensors"]
    graph, original = (
        nnspec.load(str(tmp_path / "out" / "spec.yaml")),
        nnspec.load(str(base["path"].with_suffix(".yaml"))),
    )
    assert [(n.name, n.op) for n in graph.nodes] == [(n.name, n.op) for n in original.nodes]


# ---- files that are not Keras archives -------------------------------------------------------------------
NOT_ARCHIVES = {
    "random bytes": (lambda b: bytes(range(256)) * 8, "neither a .keras (zip) archive nor a JSON model config"),
    "truncated zip": (
        lambda b: b["path"].read_bytes()[: len(b["path"].read_bytes()) // 2],
        "damaged or truncated zip archive",
    ),
    "json that is not a model": (lambda b: b"[1, 2, 3]", "not a Keras model config"),
    "json cut short": (lambda b: b'{"class_name": "Functional", "config": {', "not a JSON model config"),
    "json nested 100000 deep": (lambda b: b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "json nested 500 deep": (
        lambda b: b'{"class_name": "Sequential", "config": ' + b'{"a": ' * 500 + b"1" + b"}" * 501,
        "nested more than 100 levels",
    ),
    "an integer of 5000 digits": (
        lambda b: b'{"class_name": "Sequential", "config": {"x": ' + b"9" * 5000 + b"}}",
        "an integer of 5000 digits",
    ),
    "NaN token": (lambda b: b'{"class_name": "Sequential", "config": {"x": NaN}}', "NaN is not a JSON number"),
}


@pytest.mark.parametrize("case", sorted(NOT_ARCHIVES))
def test_a_file_that_is_not_a_keras_model_is_a_clear_error(base, tmp_path, capsys, case) -> None:
    make, expected = NOT_ARCHIVES[case]
    model = tmp_path / "model.keras"
    model.write_bytes(make(base))
    assert expected in refused(capsys, model, tmp_path / "out")


@pytest.mark.parametrize(
    "members, expected",
    [
        ({"model.weights.h5": b"not hdf5"}, "a zip file without config.json"),
        ({"config.json": b"{not json"}, "config.json is not a JSON model config"),
        ({"config.json": b"\xff\xfe\x00"}, "config.json is not UTF-8 text"),
        ({"config.json": b"null"}, "JSON holding null, not a Keras model config"),
    ],
)
def test_an_archive_with_a_bad_config_member_is_a_clear_error(tmp_path, capsys, members, expected) -> None:
    model = archive(tmp_path / "model.keras", members)
    assert expected in refused(capsys, model, tmp_path / "out")


def test_a_damaged_weights_member_is_named(base, tmp_path, capsys) -> None:
    model = with_members(base, tmp_path / "model.keras", weights=b"\x89HDF\r\n\x1a\n" + bytes(64))
    assert "the member model.weights.h5 is not a readable HDF5 file" in refused(capsys, model, tmp_path / "out")


def test_a_folder_or_a_fifo_given_as_the_model_is_refused_without_blocking(tmp_path, capsys) -> None:
    folder = tmp_path / "folder.keras"
    folder.mkdir()
    assert "is a folder" in refused(capsys, folder, tmp_path / "out")
    fifo = tmp_path / "pipe.keras"
    os.mkfifo(fifo)
    assert "is a FIFO" in refused(capsys, fifo, tmp_path / "out2")


# ---- JSON of the wrong types, at every level ----------------------------------------------------------
def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


def _replaced(config: dict, path: tuple, value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(config)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


def test_any_value_of_the_config_replaced_by_any_json_type_is_never_a_crash(base, tmp_path) -> None:
    """Every value of a real config, replaced by null, a string, a list and a 31-digit number in turn: the
    import either succeeds or raises KerasImportError (which the CLI prints as one line, exit 1) naming the
    file, and writes nothing. (The import's own functions, as the CLI calls them: the sweep is ~1,200 imports.)"""
    config = base["config"]
    model, out = tmp_path / "config.json", tmp_path / "out"
    out.mkdir()
    refusals = 0
    for path in _paths(config):
        for value in (None, "x", [], 10**30):
            model.write_text(json.dumps(_replaced(config, path, value)))
            where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path)
            try:
                with deadline(20):
                    write_spec(import_keras(str(model)), str(out / "spec.yaml"))
            except KerasImportError as exc:
                refusals += 1
                assert str(exc).startswith(f"{model}: ") and list(out.iterdir()) == [], (where, value, str(exc))
            else:
                assert [p.name for p in out.iterdir()] == ["spec.yaml"], (where, value)
                (out / "spec.yaml").unlink()
    assert refusals > 300


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (
            ("config", "layers", 1, "config", "units"),
            "5",
            "config.layers[1].config.units: Keras layer 'hidden' (Dense): units='5' is not supported",
        ),
        (
            ("config", "layers", 1, "config", "units"),
            10**30,
            "config.layers[1].config.units: Keras layer 'hidden' (Dense): units=1000000000000000000000000000000",
        ),
        (
            ("config", "layers", 2, "config"),
            [1, 2],
            "config.layers[2].config: Keras layer 'bn' (BatchNormalization) has no config object",
        ),
        (
            ("config", "layers", 3),
            None,
            "config.layers[3]: a layer entry of the model config is not an object: it is null",
        ),
        (("config", "layers"), {"a": 1}, "config.layers: the functional model's layers are an object"),
        (("config", "layers", 0, "config", "batch_shape", 1), None, "config.layers[0].config.batch_shape[1]:"),
        (
            ("config", "layers", 2, "config", "momentum"),
            "fast",
            "config.layers[2].config.momentum: Keras layer 'bn' (BatchNormalization): momentum='fast' is not a number",
        ),
        (
            ("config", "layers", 1, "inbound_nodes"),
            3,
            "config.layers[1].inbound_nodes: Keras layer 'hidden' (Dense): its inbound_nodes are the number 3",
        ),
        (("config",), None, "config: the model's config is null, not an object"),
        (("class_name",), 12, "class_name: the model's class_name is the number 12"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_by_its_config_path(base, tmp_path, capsys, path, value, expected) -> None:
    model = tmp_path / "config.json"
    model.write_text(json.dumps(_replaced(base["config"], path, value)))
    err = refused(capsys, model, tmp_path / "out", weights=False)
    assert expected in err, err


# ---- cycles and unknown layers -------------------------------------------------------------------------
def _reads(config: dict, layer: int, *names: str) -> dict:
    out = copy.deepcopy(config)
    node = out["config"]["layers"][layer]["inbound_nodes"][0]
    node["args"] = [{"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}} for name in names]
    return out


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda c: _reads(c, 1, "hidden"),
            "config.layers[1]: the functional model's layers form a cycle: 'hidden' -> 'hidden'",
        ),
        (lambda c: _reads(c, 1, "logits"), "form a cycle: 'hidden' -> 'bn' -> 'logits' -> 'hidden'"),
        (
            lambda c: _reads(c, 2, "ghost"),
            "config.layers[2].inbound_nodes: Keras layer 'bn' (BatchNormalization) reads a layer 'ghost' that the "
            "model's config does not define",
        ),
        (
            lambda c: {**c, "config": {**c["config"], "output_layers": [["ghost", 0, 0]]}},
            "config.output_layers: the functional model's output is a layer 'ghost'",
        ),
    ],
)
def test_cycles_and_unknown_layers_are_named_and_never_hang(base, tmp_path, capsys, change, expected) -> None:
    model = with_members(base, tmp_path / "model.keras", config=json.dumps(change(base["config"])).encode())
    assert expected in refused(capsys, model, tmp_path / "out")


def test_an_input_layer_that_reads_a_layer_is_refused(base, tmp_path, capsys) -> None:
    config = copy.deepcopy(base["config"])
    config["config"]["layers"][0]["inbound_nodes"] = copy.deepcopy(config["config"]["layers"][2]["inbound_nodes"])
    model = with_members(base, tmp_path / "model.keras", config=json.dumps(config).encode())
    assert (
        "config.layers[0].inbound_nodes: Keras layer 'input' (InputLayer) is the model's input but reads other layers"
        in refused(capsys, model, tmp_path / "out")
    )


# ---- members that inflate beyond the caps --------------------------------------------------------------
def test_a_weights_member_declaring_gigabytes_is_refused_before_it_is_read(base, tmp_path, capsys) -> None:
    model = with_members(base, tmp_path / "model.keras")
    set_declared_size(model, "model.weights.h5", 3 << 30)
    err = refused(capsys, model, tmp_path / "out")
    assert (
        "the member model.weights.h5 declares 3.0 GiB (3221225472 bytes) uncompressed, over the limit of 2.0 GiB" in err
    )
    assert "$NNSPEC_MAX_KERAS_WEIGHTS_BYTES" in err


def test_the_caps_are_set_by_environment_variables(base, tmp_path, capsys, monkeypatch) -> None:
    bomb = with_members(base, tmp_path / "bomb.keras", **{"assets/zeros.bin": bytes(4 << 20)})
    assert bomb.stat().st_size < 100_000  # four MiB of zeros deflate to a few KiB
    monkeypatch.setenv("NNSPEC_MAX_KERAS_WEIGHTS_BYTES", str(1 << 20))
    assert (
        "the member assets/zeros.bin declares 4.0 MiB (4194304 bytes) uncompressed, over the limit of 1.0 MiB"
        in refused(capsys, bomb, tmp_path / "a")
    )
    monkeypatch.delenv("NNSPEC_MAX_KERAS_WEIGHTS_BYTES")
    monkeypatch.setenv("NNSPEC_MAX_KERAS_CONFIG_BYTES", "1000")
    assert "the member config.json declares" in refused(capsys, base["path"], tmp_path / "b")


def test_a_dataset_declaring_gigabytes_inside_a_small_weights_member_is_refused(base, tmp_path, capsys) -> None:
    buffer = io.BytesIO(base["members"]["model.weights.h5"])
    with h5py.File(buffer, "r+") as h5:
        del h5[HIDDEN_KERNEL]
        h5.create_dataset(
            HIDDEN_KERNEL, shape=(1 << 20, 1 << 11), dtype="float32", chunks=(256, 256), compression="gzip"
        )
    weights = buffer.getvalue()
    assert len(weights) < 100_000  # no chunk is written: 8 GiB of fill value
    model = with_members(base, tmp_path / "model.keras", weights=weights)
    assert "the datasets of model.weights.h5 declare more than 2.0 GiB (at layers/dense/vars/0)" in refused(
        capsys, model, tmp_path / "out"
    )


def test_a_member_that_inflates_past_its_declared_size_is_damaged(base, tmp_path, capsys) -> None:
    model = with_members(base, tmp_path / "model.keras")
    set_declared_size(model, "config.json", 100)
    assert "the member config.json is damaged or unreadable" in refused(capsys, model, tmp_path / "out")


def test_a_model_too_large_to_build_is_refused_before_keras_builds_it(base, tmp_path, capsys) -> None:
    config = _replaced(base["config"], ("config", "layers", 1, "config", "units"), 200_000_000)
    model = with_members(base, tmp_path / "model.keras", config=json.dumps(config).encode())
    err = refused(capsys, model, tmp_path / "out")
    assert (
        "the model's weights take" in err
        and "(the largest, 'hidden.kernel', 4.5 GiB)" in err
        and "over the limit of 2.0 GiB" in err
    )


# ---- weights that are not finite floats ----------------------------------------------------------------
@pytest.mark.parametrize(
    "dataset, value, dtype, expected",
    [
        (
            HIDDEN_KERNEL,
            np.nan,
            None,
            "weight 'hidden.kernel' (model.weights.h5: layers/dense/vars/0) holds a non-finite value: "
            "hidden.kernel[0, 1] = nan",
        ),
        (
            BN_VARIANCE,
            np.inf,
            None,
            "weight 'bn.moving_variance' (model.weights.h5: layers/batch_normalization/vars/3) holds a non-finite "
            "value: bn.moving_variance[1] = inf",
        ),
        (
            LOGITS_KERNEL,
            None,
            "int32",
            "weight 'logits.kernel' (model.weights.h5: layers/dense_1/vars/0) has dtype int32; weights must be "
            "floating point",
        ),
        (
            LOGITS_KERNEL,
            None,
            "bool",
            "weight 'logits.kernel' (model.weights.h5: layers/dense_1/vars/0) has dtype bool",
        ),
    ],
)
def test_non_finite_or_integer_weights_are_refused_naming_the_weight(
    base, tmp_path, capsys, dataset, value, dtype, expected
) -> None:
    model = with_members(base, tmp_path / "model.keras", weights=edited_weights(base, dataset, value, dtype))
    assert expected in refused(capsys, model, tmp_path / "out")


def test_a_weight_of_the_wrong_shape_is_refused_naming_it(base, tmp_path, capsys) -> None:
    buffer = io.BytesIO(base["members"]["model.weights.h5"])
    with h5py.File(buffer, "r+") as h5:
        del h5[HIDDEN_KERNEL]
        h5.create_dataset(HIDDEN_KERNEL, data=np.zeros((6, 4), np.float32))
    model = with_members(base, tmp_path / "model.keras", weights=buffer.getvalue())
    assert (
        "weight 'hidden.kernel' (model.weights.h5: layers/dense/vars/0) has shape [6, 4], the spec needs [6, 5]"
        in refused(capsys, model, tmp_path / "out")
    )


# ---- outputs -------------------------------------------------------------------------------------------
def test_outputs_that_cannot_be_written_are_refused_before_anything_is_read(base, tmp_path, capsys) -> None:
    model = str(base["path"])
    cases = [
        (["-o", str(tmp_path / "missing" / "spec.yaml")], "cannot write the spec: the folder"),
        (["-o", str(tmp_path)], "cannot write the spec: it is a folder"),
        (
            ["-o", str(tmp_path / "s.yaml"), "--weights-out", str(tmp_path / "missing" / "w.safetensors")],
            "cannot write the weights file: the folder",
        ),
        (["-o", model], "the spec would overwrite the model being imported"),
    ]
    for argv, expected in cases:
        assert main(["import", model, *argv]) == 1
        err = capsys.readouterr().err
        assert expected in err and "internal error" not in err, err
    assert not (tmp_path / "s.yaml").exists()


def test_a_config_json_with_weights_out_writes_nothing(base, tmp_path, capsys) -> None:
    model = tmp_path / "config.json"
    model.write_text(json.dumps(base["config"]))
    assert "holds no weights (a config JSON)" in refused(capsys, model, tmp_path / "out")


def test_a_spec_that_fails_nnspec_check_is_not_written_and_an_old_file_survives(base, tmp_path, capsys) -> None:
    config = copy.deepcopy(base["config"])
    config["compile_config"]["optimizer"]["config"]["weight_decay"] = -1.0
    model = tmp_path / "config.json"
    model.write_text(json.dumps(config))
    out = tmp_path / "out"
    out.mkdir()
    (out / "spec.yaml").write_text("old contents\n")
    code, err = run_import(capsys, model, out, weights=False)
    assert (
        code == 1
        and "the spec made from this model does not pass nnspec's check" in err
        and "train.weight_decay" in err
    ), err
    assert [p.name for p in out.iterdir()] == ["spec.yaml"] and (out / "spec.yaml").read_text() == "old contents\n"


def test_a_layer_name_with_a_line_break_cannot_inject_yaml(base, tmp_path, capsys) -> None:
    text = json.dumps(base["config"]).replace('"logits"', json.dumps("logits\nlayers: []\n"))
    model = tmp_path / "config.json"
    model.write_text(text)
    code, err = run_import(capsys, model, tmp_path / "out", weights=False)
    assert code == 0, err
    graph = nnspec.load(str(tmp_path / "out" / "spec.yaml"))
    assert [n.op for n in graph.nodes] == ["dense", "batch_norm", "dense", "softmax"]


def test_export_refuses_a_folder_or_a_missing_folder_before_loading_anything(base, tmp_path, capsys) -> None:
    spec = tmp_path / "base.yaml"
    spec.write_text(SPEC)
    (tmp_path / "dir.keras").mkdir()
    for out, expected in (
        (tmp_path / "dir.keras", "is a folder"),
        (tmp_path / "missing" / "m.keras", "does not exist"),
    ):
        assert main(["export", str(spec), str(out)]) == 1
        err = capsys.readouterr().err
        assert expected in err and "internal error" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.yaml", "dir.keras"]
