"""Bad input, fuzzed: every malformed input to the public API gives refconv's own error with a message.

Entry points: refconv.conv2d, the gradient and transposed-conv references (refconv.grad), ConvSpec,
ConvSpec.from_id, the case selection grammar (refconv.cases.select), the deviations file loader
(refconv.deviations.parse) and the command line (refconv.cli.main, in process). An input may be valid
(then it must work); an invalid one must raise a RefconvError (CLI: exit 2 and one line on stderr), never
another exception. How many inputs each test tries is the hypothesis profile's max_examples (the `ci`
profile in tox keeps it small; `--hypothesis-profile deep` for a long session; counts in the report).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import refconv
from refconv import cases, deviations, grad
from refconv.cli import main as cli
from refconv.errors import RefconvError
from refconv.spec import DTYPES, VALUES, ConvSpec

# --- building blocks ---------------------------------------------------------------------------------

JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=True), st.text(max_size=6),
    st.tuples(st.integers(-2, 4)), st.tuples(st.integers(-2, 4), st.integers(-2, 4)),
    st.tuples(st.integers(-2, 4), st.integers(-2, 4), st.integers(-2, 4)),
    st.lists(st.integers(-2, 4), max_size=3), st.just(object()), st.just(np.int64(2)), st.just(np.float64(2.0)),
    st.just(((1, 0), (0, 1))), st.just(((1, -1), (0, 1))), st.just(((1, 0), (0,))), st.just("same"), st.just("VALID"),
)
SMALL = st.integers(0, 4)


def _raises_only_refconv_errors(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call fn; a RefconvError must name the problem (one line); any other exception fails the test."""
    try:
        return fn(*args, **kwargs)
    except RefconvError as exc:
        text = str(exc)
        assert text and "\n" not in text, repr(text)
        return None


@st.composite
def arrays(draw: Any, max_rank: int = 5) -> Any:
    """Arrays of any small shape (zero sizes too) and an assortment of dtypes, or things that are not arrays."""
    kind = draw(st.sampled_from(["float64", "float32", "float16", "int64", "bool", "complex128", "object", "list",
                                 "scalar", "none", "text", "ragged", "bfloat16", "datetime"]))
    if kind == "none":
        return None
    if kind == "ragged":
        return [[[[0.0]], [[0.0], [1.0]]]]
    if kind == "text":
        return draw(st.text(max_size=4))
    if kind == "scalar":
        return draw(st.floats(allow_nan=True))
    shape = tuple(draw(st.lists(SMALL, min_size=0, max_size=max_rank)))
    if kind == "list":
        return np.zeros(shape).tolist()
    if kind == "object":
        a = np.empty(shape, dtype=object)
        a[...] = draw(st.sampled_from(["x", None, 1.0]))
        return a
    if kind == "bfloat16":
        import ml_dtypes

        return np.ones(shape, dtype=ml_dtypes.bfloat16)
    if kind == "datetime":
        return np.zeros(shape, dtype="datetime64[s]")
    return np.ones(shape, dtype=kind)


@st.composite
def conv_args(draw: Any) -> dict[str, Any]:
    """Mostly well-formed conv arguments, each field replaced by junk now and then."""
    n, h, w, cin, cout, kh, kw = (draw(st.integers(0, 4)) for _ in range(7))
    args: dict[str, Any] = {
        "x": np.ones((n, h, w, cin)), "w": np.ones((kh, kw, cin, cout)), "b": None, "strides": 1, "padding": "SAME",
        "dilations": 1, "groups": 1, "activation": None,
    }
    for key in list(args):
        if draw(st.integers(0, 3)) == 0:
            args[key] = draw(arrays()) if key in ("x", "w", "b") else draw(JUNK)
    return args


# --- the library -----------------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(conv_args())
def test_conv2d_gives_an_array_or_a_spec_error(args: dict[str, Any]) -> None:
    x, w, b = args.pop("x"), args.pop("w"), args.pop("b")
    out = _raises_only_refconv_errors(refconv.conv2d, x, w, b, **args)
    if out is not None:
        assert isinstance(out, np.ndarray) and out.ndim == 4


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(conv_args(),
       st.sampled_from(["conv2d_grad_input", "conv2d_transpose", "conv2d_grad_filter", "conv2d_grad_bias"]),
       st.one_of(st.tuples(SMALL, SMALL, SMALL, SMALL), JUNK))
def test_gradient_ops_give_an_array_or_a_spec_error(args: dict[str, Any], op: str, shape: Any) -> None:
    x, w = args.pop("x"), args.pop("w")
    args.pop("b"), args.pop("activation")
    fn = getattr(grad, op)
    if op == "conv2d_grad_bias":
        out = _raises_only_refconv_errors(fn, x)
    else:
        out = _raises_only_refconv_errors(fn, x, w, shape, **args)
    if out is not None:
        assert isinstance(out, np.ndarray)


SPEC_FIELDS = {
    "n": st.integers(-1, 3), "h": st.integers(-1, 6), "w": st.integers(-1, 6), "c_in": st.integers(-1, 4),
    "c_out": st.integers(-1, 4), "kh": st.integers(-1, 4), "kw": st.integers(-1, 4),
    "strides": JUNK, "padding": JUNK, "dilations": JUNK, "groups": st.one_of(st.integers(-1, 4), JUNK),
    "bias": st.one_of(st.booleans(), JUNK), "dtype": st.one_of(st.sampled_from(DTYPES), JUNK),
    "layout": st.one_of(st.sampled_from(["NHWC", "NCHW", "channels_last"]), JUNK),
    "activation": st.one_of(st.sampled_from([None, "relu"]), JUNK), "seed": st.one_of(st.integers(-2, 2**40), JUNK),
    "values": st.one_of(st.sampled_from(VALUES), JUNK),
}


@given(st.fixed_dictionaries({}, optional=SPEC_FIELDS))
def test_conv_spec_is_valid_and_round_trips_or_raises_spec_error(fields: dict[str, Any]) -> None:
    base = {"n": 1, "h": 4, "w": 4, "c_in": 2, "c_out": 2, "kh": 3, "kw": 3}
    spec = _raises_only_refconv_errors(ConvSpec, **{**base, **fields})
    if spec is not None:
        assert ConvSpec.from_id(spec.id) == spec
        assert spec.describe()


VALID_IDS = [s.id for s in cases.select("edge")] + [s.id for s in cases.select("special:30")]


@st.composite
def mutated_ids(draw: Any) -> str:
    """A valid id with characters deleted, replaced or inserted; or any text."""
    if draw(st.booleans()):
        return draw(st.text(max_size=40))
    text = list(draw(st.sampled_from(VALID_IDS)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, max(len(text) - 1, 0)))
        action = draw(st.sampled_from(["delete", "replace", "insert"]))
        char = draw(st.sampled_from(list("0123456789-x_nkspdgrv") + ["\n", "é", "\x00", "99999999999"]))
        if action == "delete" and text:
            del text[i]
        elif action == "replace" and text:
            text[i] = char
        else:
            text.insert(i, char)
    return "".join(text)


@given(st.one_of(mutated_ids(), JUNK))
def test_from_id_parses_or_raises_spec_error(text: Any) -> None:
    spec = _raises_only_refconv_errors(ConvSpec.from_id, text)
    if spec is not None:
        assert ConvSpec.from_id(spec.id) == spec


SOURCES = ["edge", "random", "special", "grid", "tgrid", "cover", "nosuch", "", " ", "n1"]


@st.composite
def selections(draw: Any) -> str:
    """Comma-separated parts: sources with small or malformed counts, op suffixes, case ids, junk."""
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(st.text(max_size=12)))
        elif kind == 1:
            parts.append(draw(mutated_ids()))
        else:
            source = draw(st.sampled_from(SOURCES))
            count = draw(st.one_of(st.integers(-3, 12).map(str), st.sampled_from(["", "x", "1.5", "+3", "٣", " 2"])))
            ops = draw(st.sampled_from(["", "@all", "@grad_input", "@nope", "@", "@conv2d+transpose"]))
            parts.append(f"{source}:{count}{ops}" if count or kind == 2 else source + ops)
    return draw(st.sampled_from([",", ", ", ";"])).join(parts)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(selections(), st.integers(0, 2**32))
def test_case_selection_gives_cases_or_a_spec_error(selection: str, seed: int) -> None:
    assume("grid" not in selection or ":" in selection)  # the whole grid is thousands of cases: slow, not wrong
    specs = _raises_only_refconv_errors(cases.select, selection, seed)
    if specs is not None:
        assert all(isinstance(s, ConvSpec) for s in specs)


TOML_VALUE = st.recursive(
    st.one_of(st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8), st.sampled_from(["tf", "torch", "mismatch", "float16", "exact", "SAME"])),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)
ENTRY_KEYS = st.sampled_from(["reason", "upstream", "adapters", "outcome", "exact", "model", "toggle", "example",
                              "when", "junk", "dtype", "c_in", "padding"])


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not isinstance(value, float) or math.isfinite(value) else "0"
    if isinstance(value, str):
        return json.dumps(value)  # JSON's string escapes are TOML's
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


@st.composite
def deviation_files(draw: Any) -> str:
    """TOML text with entries of plausible and implausible fields, or any text."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.text(max_size=60))
    lines = []
    for i in range(draw(st.integers(0, 2))):
        lines.append(f"[entry_{i}]")
        for key in draw(st.lists(ENTRY_KEYS, max_size=6, unique=True)):
            value = draw(st.one_of(TOML_VALUE, st.dictionaries(st.sampled_from(["dtype", "c_in", "n", "padding", "x"]),
                                                              TOML_VALUE, max_size=2)))
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(deviation_files())
def test_deviations_parse_or_raise_spec_error(text: str) -> None:
    entries = _raises_only_refconv_errors(deviations.parse, text)
    if entries is not None:
        assert isinstance(entries, tuple)


# --- the command line ----------------------------------------------------------------------------

NOPE = "nope-adapter"  # never an adapter: a `run` that would parse can never start working


@st.composite
def argvs(draw: Any) -> list[str]:
    """Command lines: a command, then options with junk values; never one that would run real work."""
    junk = st.one_of(st.text(max_size=8), st.sampled_from(["-1", "0", "1e400", "nan", "--", "-", "edge", "x:y=z"]))
    command = draw(st.sampled_from(["run", "cases", "compare", "report", "explain", "adapters", "", "nosuch", "--x"]))
    argv = [command] if command else []
    if command == "run":
        argv += ["--adapters", NOPE + draw(st.text(max_size=4))]
        for option in draw(st.lists(st.sampled_from(["--cases", "--seed", "--dtype", "--workers", "--case-timeout",
                                                     "--repeats", "--resume", "--case", "--out", "--force"]),
                                    max_size=3, unique=True)):
            argv += [option] if option == "--force" else [option, draw(junk)]
    elif command == "cases":
        argv += [draw(selections())] if draw(st.booleans()) else []
        argv += ["--seed", draw(junk)] if draw(st.booleans()) else []
        assume(not any("grid" in a and ":" not in a for a in argv))
    elif command in ("compare", "report", "explain"):
        argv += [f"/nonexistent/{draw(junk)}" if draw(st.booleans()) else draw(junk) for _ in range(draw(SMALL))]
        for option in draw(st.lists(st.sampled_from(["--error-factor", "--time-factor", "--time-min-ms", "--out"]),
                                    max_size=2, unique=True)):
            argv += [option, draw(junk)]
    elif command == "adapters":  # a valid `adapters` probes every framework (seconds each): keep it malformed
        argv += ["--no-such-option", *draw(st.lists(junk, max_size=2))]
    else:
        argv += draw(st.lists(junk, max_size=3))
    return argv


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(argv=argvs())
def test_cli_exits_2_with_one_line_or_works(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    try:
        code = cli(argv)
    except SystemExit as exc:  # argparse's own errors (and --help/--version) exit through SystemExit
        code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    assert code in (0, 2), (argv, code, captured.err[-500:])
    if code == 2:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in captured.err, (argv, captured.err[-500:])
