"""The refconv pytest plugin (registered through the pytest11 entry point).

    pytest --refconv-adapter tf --refconv-adapter mypkg.conv:MyConv \\
           --refconv-cases edge,grid,random:500 --refconv-dtype float32 --pyargs refconv.conformance

Tests that take `refconv_label` are parametrized over the adapters; tests that also take
`refconv_case` over (case, adapter) pairs with ids `<case id>@<adapter label>`, and tests that take
`refconv_deviation` over (known deviation, adapter) pairs, `<entry id>@<adapter label>`, for the entries that name
the adapter (refconv/data/known_deviations.toml). Hypothesis profiles
`ci`, `dev` and `deep` are registered here and selected by --refconv-profile or HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

import pytest

from refconv.spec import DTYPES, ConvSpec

ENTRY_POINT = "refconv.conformance.plugin"
DEFAULT_CASES = "edge,grid:200"
PROFILES = ("ci", "dev", "deep")


def installed() -> bool:
    """Is this plugin auto-loaded through its pytest11 entry point (so a conftest must not register it again)?"""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == ENTRY_POINT for ep in entry_points(group="pytest11"))


def register_profiles() -> None:
    """ci: derandomized and bounded; dev: the everyday default; deep: thousands of examples."""
    from hypothesis import HealthCheck, settings

    slow = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("ci", derandomize=True, max_examples=40, deadline=None, print_blob=True,
                              suppress_health_check=slow)
    settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=slow)
    settings.register_profile("deep", max_examples=3000, deadline=None, suppress_health_check=slow)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("refconv", "refconv conformance: any conv2d against the float64 reference")
    group.addoption("--refconv-adapter", action="append", default=[], metavar="NAME",
                    help="adapter under test: a built-in name (tf, torch, tf:onednn=off) or package.module:Class; "
                         "repeatable (default: every built-in, unavailable ones skip)")
    group.addoption("--refconv-cases", default=None, metavar="SELECTION",
                    help=f"case selection, e.g. edge,grid,random:500 or case ids (default: {DEFAULT_CASES})")
    group.addoption("--refconv-dtype", default=None, metavar="DTYPES",
                    help=f"run every case in these dtypes, comma-separated ({', '.join(DTYPES)})")
    group.addoption("--refconv-ops", default=None, metavar="OPS",
                    help="ops to check, e.g. conv2d,grad_input or all (the default: every op; an adapter without an "
                         "op's method skips it; grid and random cases stay conv2d unless the part says '@ops')")
    group.addoption("--refconv-seed", type=int, default=0, help="seed of the random case source (default 0)")
    group.addoption("--refconv-profile", choices=PROFILES, default=None,
                    help="hypothesis profile (default: $HYPOTHESIS_PROFILE, else dev)")


def pytest_configure(config: pytest.Config) -> None:
    register_profiles()
    # Bad options stop the run up front with one line (exit 4), not a collection error per module.
    if config.getoption("--refconv-adapter"):
        adapter_labels(config)
    if config.getoption("--refconv-cases") or config.getoption("--refconv-dtype") or config.getoption("--refconv-ops"):
        selected_cases(config)
    profile = config.getoption("--refconv-profile") or os.environ.get("HYPOTHESIS_PROFILE") or "dev"
    if profile:
        from hypothesis import settings

        if profile not in PROFILES:
            raise pytest.UsageError(f"HYPOTHESIS_PROFILE must be one of {', '.join(PROFILES)}, got {profile!r}")
        settings.load_profile(profile)


def adapter_labels(config: pytest.Config) -> list[str]:
    """The adapters under test as labels, in the order given; the built-in defaults when none."""
    import adapters

    names = config.getoption("--refconv-adapter") or list(adapters.DEFAULT)
    try:
        refs = [adapters.parse(name) for name in names]
        for ref in refs:
            if ":" not in ref.name and ref.name not in adapters.known():
                adapters.unavailable_reason(ref)  # raises AdapterError listing the choices
        labels = [ref.label for ref in refs]
    except ValueError as exc:
        raise pytest.UsageError(f"--refconv-adapter: {exc}") from None
    return list(dict.fromkeys(labels))


def selected_cases(config: pytest.Config) -> list[ConvSpec]:
    """The cases named by --refconv-cases in the --refconv-ops, cast to --refconv-dtype if given; duplicates dropped."""
    from refconv.cases import parse_ops, select
    from refconv.errors import RefconvError

    selection = config.getoption("--refconv-cases") or DEFAULT_CASES
    dtype_text = config.getoption("--refconv-dtype")
    try:
        ops = parse_ops(config.getoption("--refconv-ops") or "all")
        cases = select(selection, config.getoption("--refconv-seed"), ops)
        if dtype_text:
            dtypes = [d.strip() for d in dtype_text.split(",") if d.strip()]
            cases = [c.replace(dtype=d) for d in dtypes for c in cases]
    except RefconvError as exc:
        raise pytest.UsageError(f"--refconv-cases/--refconv-dtype: {exc}") from None
    return list({c.id: c for c in cases}.values())


def _variant_skips(labels: list[str]) -> dict[str, str]:
    """Labels that must skip: a variant of an adapter named earlier in the list.

    Variants such as tf:onednn=off change process-wide settings that a framework reads once at
    import, so two variants of one adapter cannot be honest in one pytest process; the first wins.
    """
    import adapters

    first: dict[str, str] = {}
    skips = {}
    for label in labels:
        name = adapters.parse(label).name
        if name in first:
            skips[label] = (f"{label} cannot share a process with {first[name]} (import-time settings); "
                            f"run it alone: pytest --refconv-adapter {label} ...")
        else:
            first[name] = label
    return skips


def _param(values: tuple[Any, ...], test_id: str, label: str, skips: dict[str, str]) -> Any:
    marks = [pytest.mark.skip(reason=skips[label])] if label in skips else []
    return pytest.param(*values, id=test_id, marks=marks)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if "refconv_label" not in names:
        return
    labels = adapter_labels(metafunc.config)
    skips = _variant_skips(labels)
    if "refconv_case" in names:
        params = [_param((label, case), f"{case.id}@{label}", label, skips)
                  for case in selected_cases(metafunc.config) for label in labels]
        metafunc.parametrize(("refconv_label", "refconv_case"), params)
    elif "refconv_deviation" in names:
        metafunc.parametrize(("refconv_label", "refconv_deviation"), _deviation_params(labels, skips))
    else:
        metafunc.parametrize("refconv_label", [_param((label,), label, label, skips) for label in labels])


def _deviation_params(labels: list[str], skips: dict[str, str]) -> list[Any]:
    """(label, entry) per reviewed entry that names the label; a label no entry names skips with that reason."""
    from refconv import deviations

    params = []
    for label in labels:
        entries = [d for d in deviations.load() if d.covers(label)]
        if not entries:
            reason = skips.get(label, f"no known deviations name {label}")
            params.append(pytest.param(label, None, id=label, marks=[pytest.mark.skip(reason=reason)]))
        params += [_param((label, entry), f"{entry.id}@{label}", label, skips) for entry in entries]
    return params


def adapter_or_skip(label: str) -> Any:
    """The loaded adapter, or pytest.skip with the reason it is unavailable."""
    from refconv.conformance.check import load_adapter

    adapter, reason = load_adapter(label)
    if adapter is None:
        pytest.skip(reason)
    return adapter


def assert_conforms(label: str, spec: ConvSpec) -> None:
    """The conformance test body: pass, fail with the numpy-style message, skip, or strict xfail."""
    from refconv.conformance.check import check

    result = check(label, adapter_or_skip(label), spec)
    if result.action == "skip":
        pytest.skip(result.message)
    if result.action == "xfail":
        pytest.xfail(result.message)
    if result.action == "fail":
        pytest.fail(result.message, pytrace=False)
