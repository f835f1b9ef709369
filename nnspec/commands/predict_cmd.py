"""``nnspec predict SPEC --weights FILE --input X.npy``: the model's outputs for the examples in X.

X holds examples already in the model's input space (normalised as the spec's data set is): shape
``(N, *input.shape)``, or a single example of shape ``input.shape``. Single-channel images may omit
the channel axis. X must be a numeric ``.npy`` array (no pickles, no 0-d array) without NaN or infinity.

``--output P.npy`` is written to exactly that path (no ``.npy`` is appended). Its folder must already
exist: a missing folder is refused (not created, so a typo does not scatter files), as is a path that
is a folder, a symbolic link, a FIFO or a device, or a folder that cannot be written; all of this is checked
before the model is compiled. The file is written atomically (:func:`nnspec.outputs.write_output`): to a
temporary file in the same folder, then renamed over ``P.npy``, so an interrupted run never leaves a partial file.
"""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import DataError, NnspecError
from ..outputs import check_output_file, write_outputs
from .model_options import add_spec_arguments, load_graph

SHOWN = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec predict``."""
    add_spec_arguments(parser)
    parser.add_argument("--weights", "-w", required=True, metavar="FILE", help="weights file (.safetensors)")
    parser.add_argument("--input", "-i", required=True, metavar="X.npy", help="examples to predict, a NumPy .npy file")
    parser.add_argument(
        "--output",
        "-o",
        default=None,
        metavar="P.npy",
        help="write the outputs (probabilities when the model ends in softmax) to this file; its folder must exist",
    )


def read_input(path: str, input_shape: tuple[int, ...]) -> np.ndarray:
    """Read and check an .npy file of examples; returns ``(N, *input_shape)``. Problems are DataErrors naming the
    path."""
    from ..data.arrays import read_npy
    from ..data.safety import check_features, shown

    x = read_npy(path, "input file")
    if x.ndim == 0:
        raise DataError(
            f"{shown(path)}: holds a 0-d array (a single number); expected examples of shape {list(input_shape)}"
        )
    if x.dtype.kind not in "iufb":
        raise DataError(f"{shown(path)}: expected numbers, found dtype {x.dtype}")
    check_features(x, path, "x")
    want = tuple(input_shape)
    if x.shape == want or (want[-1:] == (1,) and x.shape == want[:-1]):
        x = x.reshape((1, *want))
    elif x.ndim == len(want) and want[-1:] == (1,) and x.shape[1:] == want[:-1]:
        x = x[..., None]
    if x.shape[1:] != want:
        raise DataError(
            f"{shown(path)}: examples have shape {list(x.shape[1:])} (array {list(x.shape)}), the spec's input.shape "
            f"is {list(want)}; expected an array of shape [N, {', '.join(map(str, want))}]"
        )
    return x


def write_output(path: str, outputs: np.ndarray) -> None:
    """Write ``outputs`` to exactly ``path`` as .npy, whole or not at all (:func:`nnspec.outputs.write_outputs`)."""

    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add .npy to a name without it
            np.save(f, outputs, allow_pickle=False)

    write_outputs([(path, save)], "outputs", error=NnspecError)


def run(args: argparse.Namespace) -> int:
    """Check the output path and the input, compile with the weights, predict, and print (or save) the outputs."""
    from ..backends import get_backend
    from ..semantics.weights import load_weights

    graph = load_graph(args)
    target = None
    if args.output:
        target = check_output_file(args.output, "outputs", error=NnspecError, example="predictions.npy")
    x = read_input(args.input, tuple(graph.input_shape))
    weights = load_weights(args.weights, graph)
    model = get_backend(args.backend).compile(graph, weights, device=args.device, dtype=graph.dtype)
    outputs = np.asarray(model.predict(x))
    classes = outputs.argmax(axis=-1)
    if target is not None:
        write_output(target, outputs)
        print(f"wrote {args.output}: outputs of shape {list(outputs.shape)}")
    for i in range(min(len(classes), SHOWN)):
        print(f"{i}: class {int(classes[i])}  (output {float(outputs[i, classes[i]]):.4f})")
    if len(classes) > SHOWN:
        counts = np.bincount(classes, minlength=outputs.shape[-1])
        print(
            f"... {len(classes)} examples in all; predicted classes: "
            + ", ".join(f"{c}: {n}" for c, n in enumerate(counts) if n)
        )
    return 0
