"""Which ONNX operators TensorRT's ONNX parser accepts, per TensorRT version, checked before a build is tried.

Compiled from onnx-tensorrt's docs/operators.md (the 8.5 and 10.15 support matrices) and its Changelog (ops added
in 8.6, 9.x and 10.1-10.15). Only default-domain ops are listed; any other domain needs a plugin. The tables say
whether an op imports at all, not every per-op restriction (e.g. "axes must be an initializer").
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

# TensorRT 8.5 GA matrix, rows marked Y.
_TRT85 = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum
Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSigmoid HardSwish Identity If ImageScaler
InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul
Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# 8.6 EA changelog: GroupNormalization, LayerNormalization, IsInf.
_TRT86 = _TRT85 | {"GroupNormalization", "LayerNormalization", "IsInf"}

# 10.0: 9.2 added Hardmax; CastLike, Gelu and Mish are in the 10.x matrix without a changelog entry, and their
# opsets (15, 20, 18) are within 10.0's range, so they are counted from 10.0.
_TRT100 = _TRT86 | {"Hardmax", "CastLike", "Gelu", "Mish"}

# 10.15 matrix: + DeformConv (10.1), Blackman/Hamming/HannWindow (10.4), STFT (10.5), Attention (10.14),
# RotaryEmbedding, RMSNormalization, TensorScatter (10.15).
_TRT1015 = _TRT100 | {"DeformConv", "BlackmanWindow", "HammingWindow", "HannWindow", "STFT", "Attention",
                      "RotaryEmbedding", "RMSNormalization", "TensorScatter"}

SUPPORTED_OPS: dict[str, frozenset[str]] = {"8.5": _TRT85, "8.6": _TRT86, "10": _TRT100, "10.15": _TRT1015}
# Highest default-domain opset each parser version imports.
MAX_OPSET: dict[str, int] = {"8.5": 17, "8.6": 17, "10": 20, "10.15": 24}
# Local (model) functions are inlined by the parser from 9.0 on; 8.x rejects them.
_INLINES_FUNCTIONS = {"8.5": False, "8.6": False, "10": True, "10.15": True}
_DEFAULT_DOMAINS = ("", "ai.onnx")


def _load(model_or_path: Any) -> Any:
    """An onnx.ModelProto from a path or a model (onnx is imported lazily: the runtime does not need it); a path that
    holds no ONNX graph is a ValueError naming it."""
    if not isinstance(model_or_path, (str, os.PathLike)):
        return model_or_path
    import onnx
    from google.protobuf.message import Error as ProtobufError

    path = os.fspath(model_or_path)
    try:  # the binary format whatever the file's suffix (onnx.load reads a .json as JSON)
        model = onnx.load(path, format="protobuf", load_external_data=False)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable ONNX graph ({exc.strerror})") from exc
    except ProtobufError as exc:
        raise ValueError(f"{path}: not a readable ONNX graph (truncated, or not ONNX: {exc})") from exc
    if not model.graph.node:
        raise ValueError(f"{path}: not an ONNX graph (no operators in it)")
    return model


def _subgraphs(node: Any) -> Iterator[Any]:
    """Bodies of If/Loop/Scan nodes (attributes holding graphs)."""
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def _walk(nodes: Iterable[Any]) -> Iterator[Any]:
    for node in nodes:
        yield node
        for g in _subgraphs(node):
            yield from _walk(g.node)


def _check_versions(versions: Iterable[str]) -> list[str]:
    versions = list(versions)
    unknown = [v for v in versions if v not in SUPPORTED_OPS]
    if unknown:
        raise ValueError(f"no operator table for TensorRT {unknown}; known: {sorted(SUPPORTED_OPS)}")
    return versions


def _node_problem(node: Any, functions: dict[tuple[str, str], Any], version: str) -> str | None:
    """The op name to report when `node` does not import on `version`, else None."""
    key = (node.domain, node.op_type)
    if key in functions:
        return None if _INLINES_FUNCTIONS[version] else f"{node.op_type} (local function)"
    if node.domain not in _DEFAULT_DOMAINS:
        return f"{node.domain}::{node.op_type}"
    return None if node.op_type in SUPPORTED_OPS[version] else node.op_type


def check_tensorrt_ops(model_or_path: Any, versions: Iterable[str] = ("8.6", "10")) -> list[tuple[str, str]]:
    """Sorted (op, TensorRT version) pairs the ONNX parser of that version would reject. Empty: all import."""
    model = _load(model_or_path)
    functions = {(f.domain, f.name): f for f in model.functions}
    nodes = list(_walk(model.graph.node))
    for f in functions.values():  # function bodies are imported op by op where functions are inlined
        nodes += list(_walk(f.node))
    found = set()
    for version in _check_versions(versions):
        for node in nodes:
            problem = _node_problem(node, functions, version)
            if problem:
                found.add((problem, version))
    return sorted(found)


def default_opset(model_or_path: Any) -> int | None:
    model = _load(model_or_path)
    for imp in model.opset_import:
        if imp.domain in _DEFAULT_DOMAINS:
            return int(imp.version)
    return None


def check_opset(model_or_path: Any, versions: Iterable[str] = ("8.6", "10")) -> list[str]:
    """Messages for each TensorRT version whose parser does not import the model's default-domain opset."""
    opset = default_opset(model_or_path)
    if opset is None:
        return []
    return [f"opset {opset} is above TensorRT {v}'s maximum ({MAX_OPSET[v]}); export at opset <= {MAX_OPSET[v]}"
            for v in _check_versions(versions) if opset > MAX_OPSET[v]]
