"""The columns of a result row: one row per (case, adapter), shared by the runner and the report."""

from __future__ import annotations

from typing import Any

from refconv.op_tolerance import reduction_length
from refconv.padding import geometry
from refconv.spec import ConvSpec

# Documented one by one in reports/README.md; keep both in step.
CASE_COLUMNS = (
    "case_id", "case_name", "op", "dtype", "n", "h", "w", "c_in", "c_out", "kh", "kw", "sh", "sw", "dh", "dw",
    "groups", "padding", "pad_top", "pad_bottom", "pad_left", "pad_right", "out_h", "out_w", "empty_output", "layout",
    "activation", "bias", "seed", "values", "K", "flops",
    "layer", "model",  # the model layer a case stands for (refconv audit); '' for generated cases
)
RESULT_COLUMNS = (
    # relation: '' on a case row; the metamorphic relation's name on a relation row (refconv.relations_run)
    "adapter", "relation", "adapter_version", "outcome", "known_deviation", "expected_shape", "actual_shape",
    "actual_dtype",
    "n_elements", "mismatched", "max_abs_err", "max_rel_err", "bound_ratio", "max_ulp", "tolerance_c",
    "time_ms", "time_min_ms", "time_median_ms", "repeats", "gflops", "error", "settings", "repro",
    # the kernels the engine dispatched to on this case, as it reports them (refconv.hardware): onednn:avx2, eigen
    "isa",
    # provenance key fields (refconv.provenance.row_columns), so concatenated runs stay self-describing
    "host", "cpu_model", "cpu_features", "python", "numpy_version", "refconv_version", "git_commit",
    # where on a Dask cluster the row was made ('' in a local run): refconv.provenance.dask_worker_label
    "worker",
)
COLUMNS = ("run_id",) + CASE_COLUMNS + RESULT_COLUMNS


def clean_text(value: object) -> str:
    """A third-party string as refconv keeps it: bytes that are not UTF-8 (surrogates) become \\x escapes.

    Adapter versions, settings and error messages may hold anything; with this every file, table and
    terminal line can encode them. Escaping for HTML, Markdown or Python is each renderer's job.
    """
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def flops(spec: ConvSpec) -> int:
    """2 * multiply-adds of the convolution (bias and activation not counted)."""
    rows, cols = geometry(spec)
    return 2 * spec.n * rows.out * cols.out * spec.c_out * spec.reduction_length


def case_columns(spec: ConvSpec) -> dict[str, Any]:
    """The case half of a row: every spec field, the padding the reference applies, K and FLOPs."""
    rows, cols = geometry(spec)
    return {
        "case_id": spec.id, "case_name": spec.name, "op": spec.op, "dtype": spec.dtype,
        "layer": "", "model": "",
        "n": spec.n, "h": spec.h, "w": spec.w, "c_in": spec.c_in, "c_out": spec.c_out,
        "kh": spec.kh, "kw": spec.kw, "sh": spec.strides[0], "sw": spec.strides[1],
        "dh": spec.dilations[0], "dw": spec.dilations[1], "groups": spec.groups,
        "padding": spec.padding_kind, "pad_top": rows.before, "pad_bottom": rows.after,
        "pad_left": cols.before, "pad_right": cols.after, "out_h": rows.out, "out_w": cols.out,
        "empty_output": rows.out == 0 or cols.out == 0,
        "layout": spec.layout, "activation": spec.activation or "", "bias": spec.bias, "seed": spec.seed,
        "values": spec.values,
        "K": reduction_length(spec), "flops": flops(spec),
    }
