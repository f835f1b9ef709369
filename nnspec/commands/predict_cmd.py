"""``nnspec predict SPEC --weights FILE --input X.npy``: the model's outputs for the examples in X.

X holds examples already in the model's input space (normalised as the spec's data set is): shape
``(N, *input.shape)``, or a single example of shape ``input.shape``. Single-channel images may omit
the channel axis.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from .model_options import add_spec_arguments, load_graph

SHOWN = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnspec predict``."""
    add_spec_arguments(parser)
    parser.add_argument("--weights", "-w", required=True, metavar="FILE", help="weights file (.safetensors)")
    parser.add_argument("--input", "-i", required=True, metavar="X.npy", help="examples to predict, a NumPy .npy file")
    parser.add_argument("--output", "-o", default=None, metavar="P.npy", help="write the outputs (probabilities when the model ends in softmax) here")


def read_input(path: str, input_shape: tuple[int, ...]) -> np.ndarray:
    """Read and check an .npy file of examples; returns ``(N, *input_shape)``. Problems are DataErrors naming the path."""
    from ..errors import DataError

    if not os.path.isfile(path):
        raise DataError(f"{path}: no such input file")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a NumPy .npy array of numbers ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    if not isinstance(x, np.ndarray):
        raise DataError(f"{path}: expected one array in an .npy file, found an .npz archive; save it with numpy.save")
    if x.dtype.kind not in "iufb":
        raise DataError(f"{path}: expected numbers, found dtype {x.dtype}")
    want = tuple(input_shape)
    if x.shape == want or (want[-1:] == (1,) and x.shape == want[:-1]):
        x = x.reshape((1, *want))
    elif x.ndim == len(want) and want[-1:] == (1,) and x.shape[1:] == want[:-1]:
        x = x[..., None]
    if x.shape[1:] != want:
        raise DataError(
            f"{path}: examples have shape {list(x.shape[1:])} (array {list(x.shape)}), the spec's input.shape is {list(want)}; "
            f"expected an array of shape [N, {', '.join(map(str, want))}]"
        )
    return x


def run(args: argparse.Namespace) -> int:
    """Compile with the weights, predict, and print (or save) the outputs."""
    from ..backends import get_backend
    from ..runtime.weights import load_weights

    graph = load_graph(args)
    x = read_input(args.input, tuple(graph.input_shape))
    weights = load_weights(args.weights, graph)
    model = get_backend(args.backend).compile(graph, weights, device=args.device, dtype=graph.dtype)
    outputs = np.asarray(model.predict(x))
    classes = outputs.argmax(axis=-1)
    if args.output:
        np.save(args.output, outputs)
        print(f"wrote {args.output}: outputs of shape {list(outputs.shape)}")
    for i in range(min(len(classes), SHOWN)):
        print(f"{i}: class {int(classes[i])}  (output {float(outputs[i, classes[i]]):.4f})")
    if len(classes) > SHOWN:
        counts = np.bincount(classes, minlength=outputs.shape[-1])
        print(f"... {len(classes)} examples in all; predicted classes: " + ", ".join(f"{c}: {n}" for c, n in enumerate(counts) if n))
    return 0
