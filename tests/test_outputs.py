"""One output-path check (:mod:`nnspec.outputs`) for every command that writes a file the user named: each
refuses an unusable path before any work, in one message form, ``PATH: cannot write the WHAT: REASON``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.outputs import OutputPathError, check_output_file, check_output_folder

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "specs" / "digits_mlp.yaml")


def test_check_output_file_refuses_each_unusable_path(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    cases = {
        str(tmp_path / "a\0b.png"): "cannot write the chart: not a usable path (it contains a NUL byte)",
        "": "(empty): cannot write the chart: not a usable path",
        str(tmp_path / "dir"): f"cannot write the chart: it is a folder; give the name of the file to write, e.g. "
        f"{tmp_path / 'dir' / 'c.png'}",
        str(tmp_path / "missing" / "c.png"): "cannot write the chart: the folder "
        f"{tmp_path / 'missing'} does not exist",
        "/dev/null": "cannot write the chart: it exists and is not a regular file",
    }
    for path, says in cases.items():
        with pytest.raises(OutputPathError) as refused:
            check_output_file(path, "chart", example="c.png")
        assert says in str(refused.value) and "\0" not in str(refused.value), path
    with pytest.raises(OutputPathError, match="the chart must end in .png"):
        check_output_file(tmp_path / "c.svg", "chart", suffix=".png")
    assert check_output_file(tmp_path / "c.png", "chart", suffix=".png") == str(tmp_path / "c.png")


def test_a_link_is_refused_whatever_it_names_and_a_kept_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    os.symlink(tmp_path / "dir", tmp_path / "link")
    with pytest.raises(OutputPathError, match="it is a symbolic link to .*dir; nnspec never writes through a link"):
        check_output_file(tmp_path / "link", "spec")
    model = tmp_path / "model.keras"
    model.write_bytes(b"x")
    os.symlink(model, tmp_path / "alias.keras")
    with pytest.raises(OutputPathError, match="it is a symbolic link"):
        check_output_file(tmp_path / "alias.keras", "spec", keep=(model, "the model being imported"))
    with pytest.raises(OutputPathError, match="the spec would overwrite the model being imported"):
        check_output_file(model, "spec", keep=(tmp_path / "model.keras", "the model being imported"))


def test_check_output_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="cannot use the sweep folder: it exists and is not a folder"):
        check_output_folder(tmp_path / "file", "sweep folder")
    assert check_output_folder(tmp_path / "new", "sweep folder") == str(tmp_path / "new")


@pytest.mark.parametrize(
    "argv, what",
    [
        (["schema", "-o", "{missing}/s.json"], "schema"),
        (["plot", "{tmp}/no-such-run", "-o", "{missing}/p.png"], "figure"),
        (["profile", SPEC, "--plot", "{missing}/p.png"], "chart"),
        (["predict", SPEC, "-w", "{tmp}/absent.safetensors", "-i", "{tmp}/x.npy", "-o", "{missing}/p.npy"], "outputs"),
        (["export", SPEC, "{missing}/m.keras"], "Keras 3 model file"),
        (["export", SPEC, "{missing}/m.onnx"], "ONNX model file"),
    ],
    ids=["schema", "plot", "profile", "predict", "export-keras", "export-onnx"],
)
def test_every_command_refuses_a_missing_folder_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], what: str
) -> None:
    missing = tmp_path / "missing"
    args = [a.format(tmp=tmp_path, missing=missing) for a in argv]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert f"cannot write the {what}: the folder {missing} does not exist" in err, err
    assert "Traceback" not in err and not missing.exists()
