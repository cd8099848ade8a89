"""Upstream-ready bug reports: `<run_dir>/upstream/<problem id>.md`, one per problem, for the framework's tracker.

A report holds a title, the environment (versions, CPU, the precision and thread settings the adapter
recorded, the CPU's features and the kernels the failing row ran: its `isa`), a standalone repro script inlined in
the report (NumPy and the one framework; the case's seeded inputs regenerated bit for bit, or embedded when they
cannot be; exit 1 while the bug reproduces, 0 once fixed, 3 where this machine runs other kernels than the ones
it was seen on), expected against actual with numbers and each engine's kernels, the characterized conditions in
words and as data with the hardware it needs, the toggle or setting that avoids it (ONEDNN_MAX_CPU_ISA at a level
seen to pass, TF_ENABLE_ONEDNN_OPTS=0, torch.backends.mkldnn.enabled = False for oneDNN kernels), related upstream
issues and, when bisected, since which version it is present.
The same script sits beside the report as `<problem id>.py`. Everything that came from an adapter, a
framework or findings.json is escaped for Markdown: code spans and fences are longer than any backtick run
they hold, and text outside them has Markdown and HTML specials escaped.
The escaping helpers live in `refconv.markdown`, the script and its run in `refconv.upstream_script`;
both are importable from here too.

>>> conditions_words({"c_in": 1, "n": {"min": 2}, "dtype": ["float32", "bfloat16"]})
'c_in = 1 and n >= 2 and dtype is float32 or bfloat16'
>>> code_span("a `b` c")
'``a `b` c``'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import refconv
from refconv import repro, repro_hardware
from refconv.errors import RefconvError
from refconv.markdown import (  # noqa: F401  (re-exported: refconv.report.problems and others use them from here)
    cell,
    code_span,
    conditions_words,
    fence,
    md_link,
    md_text,
    safe_href,
    toml_inline,
    visible,
)
from refconv.padding import geometry
from refconv.spec import ConvSpec
from refconv.upstream_script import (  # noqa: F401  (re-exported)
    EXECUTE_TIMEOUT_S,
    OUTPUT_CAP,
    _run_and_remember,
    cached_result,
    execute,
    has_template,
    inline_loader,
    standalone_script,
)
from refconv.upstream_script import write_atomic as _write

UPSTREAM_DIR = "upstream"
# adapter name -> (project, the API the repro calls, its tracker)
FRAMEWORKS: dict[str, tuple[str, str, str]] = {
    "tf": ("TensorFlow", "tf.nn.conv2d", "https://github.com/tensorflow/tensorflow/issues"),
    "keras": ("Keras", "keras.layers.Conv2D", "https://github.com/keras-team/keras/issues"),
    "torch": ("PyTorch", "torch.nn.functional.conv2d", "https://github.com/pytorch/pytorch/issues"),
    "torch-nn": ("PyTorch", "torch.nn.Conv2d", "https://github.com/pytorch/pytorch/issues"),
    "torch-cuda": ("PyTorch", "torch.nn.functional.conv2d (CUDA)", "https://github.com/pytorch/pytorch/issues"),
    "jax": ("JAX", "jax.lax.conv_general_dilated", "https://github.com/jax-ml/jax/issues"),
    "jax-gpu": ("JAX", "jax.lax.conv_general_dilated (GPU)", "https://github.com/jax-ml/jax/issues"),
    "onnxruntime": ("ONNX Runtime", "the Conv operator", "https://github.com/microsoft/onnxruntime/issues"),
    "onnx-ref": ("ONNX", "onnx.reference's Conv", "https://github.com/onnx/onnx/issues"),
}
OUTCOME_WORDS = {
    "mismatch": "returns wrong values",
    "wrong_shape": "returns an output of the wrong shape",
    "wrong_dtype": "returns an output of the wrong dtype",
    "raised": "raises where the correct result is defined",
    "crashed": "crashes the process",
    "timeout": "does not return",
    "broken": "breaks a metamorphic relation",
}
# Environment variables worth naming in a numerical bug report (threads, oneDNN/MKL, precision).
RELEVANT_ENV = re.compile(r"^(OMP_|MKL_|KMP_|OPENBLAS_|DNNL_|ONEDNN_|TF_ENABLE|TF_NUM|TF_INTRA|TF_INTER|TORCH_|"
                          r"XLA_|JAX_|ORT_|KERAS_|NVIDIA_TF32|CUDA_VISIBLE)")
CPU_FLAGS = re.compile(r"^(avx|amx|fma|f16c|sse4)")


# --- the report ----------------------------------------------------------------------------------


def normalize(problem: Any) -> dict[str, Any]:
    """A Problem or a findings.json dict as a dict whose fields have their types (a foreign file may not)."""
    p = dict(problem.to_dict()) if hasattr(problem, "to_dict") else dict(problem)

    def listed(value: Any) -> list[str]:
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else []

    def count(value: Any) -> int:
        try:
            return max(int(value), 0)
        except (TypeError, ValueError):
            return 0

    p["adapters"], p["cases"] = listed(p.get("adapters")), listed(p.get("cases"))
    p["rows"], p["probes"] = count(p.get("rows")), count(p.get("probes"))
    for key in ("conditions", "engines"):
        p[key] = dict(p[key]) if isinstance(p.get(key), Mapping) else {}
    p["engines"] = {str(k): str(v) for k, v in p["engines"].items()}
    for key in ("id", "outcome", "minimal_case"):
        p[key] = str(p.get(key) or "")
    return p


def _records(rows: Any) -> list[dict[str, Any]]:
    if hasattr(rows, "to_dict"):
        return list(rows.to_dict("records"))
    return rows if isinstance(rows, list) else [dict(r) for r in rows]


def _relevant(records: list[dict[str, Any]], case_id: str) -> list[dict[str, Any]]:
    """The rows a report reads: those of the minimal case, and one row per adapter (for its version)."""
    mine: list[dict[str, Any]] = []
    first: dict[Any, dict[str, Any]] = {}
    for r in records:
        if r.get("case_id") == case_id:
            mine.append(r)
        else:
            first.setdefault(r.get("adapter"), r)
    return mine + list(first.values())


def report_path(run_dir: Path | str, problem_id: str) -> Path:
    """upstream/<problem id>.md, the id made filename-safe."""
    return Path(run_dir) / UPSTREAM_DIR / f"{repro.safe_name(problem_id) or 'problem'}.md"


def framework_of(label: str) -> tuple[str, str, str]:
    """(project, API, tracker) for an adapter label; a third-party adapter is named by its label."""
    name = label.split(":")[0]
    if name in FRAMEWORKS:
        return FRAMEWORKS[name]
    return name, "conv2d", ""  # a package.module:Class adapter: its module is the project


def repro_label(problem: Mapping[str, Any]) -> str:
    """The failing label the script calls: the first with a direct framework template, else the first."""
    labels = [str(a) for a in problem.get("adapters") or []] or ["numpy"]
    spec = _spec(problem)
    return next((a for a in labels if has_template(a, spec)), labels[0])


def write_report(run_dir: Path | str, problem: Any, rows: Any, provenance: Mapping[str, Any] | None,
                 run: bool = False, timeout: float = EXECUTE_TIMEOUT_S) -> Path:
    """Write upstream/<id>.md (and the script beside it as <id>.py); returns the report's path.

    run: also run the script here (a measurement: `refconv hunt` does it, rendering does not) and put its
    exit status and output in the report; the result is remembered in <id>.out.json while the script is
    unchanged, and a later render without `run` still shows it.
    """
    p = normalize(problem)
    path = report_path(run_dir, str(p.get("id", "")))
    path.parent.mkdir(parents=True, exist_ok=True)
    records = _relevant(_records(rows), str(p.get("minimal_case", "")))
    spec, label = _spec(p), repro_label(p)
    script, result = None, None
    if spec is not None and spec.op == "conv2d":
        row = _row(records, str(p.get("minimal_case")), label)
        script = standalone_script(spec, label, _message(p, row, label), path.with_suffix(".py").name,
                                   where=where_seen(p, records, provenance or {}))
        _write(path.with_suffix(".py"), script)
        script_file = path.with_suffix(".py")
        result = _run_and_remember(script_file, script, timeout) if run else cached_result(script_file, script)
    _write(path, report_text(p, records, dict(provenance or {}), script, result))
    return path


def _spec(p: Mapping[str, Any]) -> ConvSpec | None:
    try:
        return ConvSpec.from_id(str(p.get("minimal_case", "")))
    except RefconvError:
        return None


def _row(records: list[dict[str, Any]], case_id: str, label: str) -> dict[str, Any] | None:
    return next((r for r in records if r.get("case_id") == case_id and r.get("adapter") == label), None)


def where_seen(p: Mapping[str, Any], records: list[dict[str, Any]],
               provenance: Mapping[str, Any]) -> repro_hardware.Seen:
    """Where the problem's failing row was seen: its kernels, the CPU (the run's if the row lacks it), needs, avoid."""
    label = repro_label(p)
    row = dict(_row(records, str(p.get("minimal_case", "")), label) or {})
    cpu: Mapping[str, Any] = provenance["cpu"] if isinstance(provenance.get("cpu"), Mapping) else {}
    row["cpu_model"] = row.get("cpu_model") or cpu.get("model", "")
    row["cpu_features"] = row.get("cpu_features") or cpu.get("features", "")
    return repro_hardware.seen(label, row, _deviation(p.get("known_deviation")), passing_levels(p, records, label))


def passing_levels(p: Mapping[str, Any], records: list[dict[str, Any]], label: str) -> list[str]:
    """oneDNN levels at which the label's engine passed the minimal case (its rows' isa, its isa=<level> variants)."""
    engine = label.partition(":")[0]
    case = str(p.get("minimal_case", ""))
    levels = repro_hardware.passing_levels([r for r in records if r.get("case_id") == case], label)
    for variant, outcome in (p.get("engines") or {}).items():
        options = dict(o.partition("=")[::2] for o in str(variant).split(":")[1:] if "=" in o)
        if str(variant).partition(":")[0] == engine and outcome == "pass" and options.get("isa") \
                and options.get("onednn") != "off":
            levels.append(repro_hardware.level_name(options["isa"]))
    return list(dict.fromkeys(levels))


def _message(p: Mapping[str, Any], row: Mapping[str, Any] | None, label: str) -> str:
    title = str(p.get("title") or "")
    error = str(row.get("error") or "") if row else ""
    return "\n".join(t for t in (title, f"{label}: {p.get('outcome', '')} on {p.get('minimal_case', '')}", error) if t)


def report_text(p: Mapping[str, Any], records: list[dict[str, Any]], provenance: Mapping[str, Any],
                script: str | None, result: Mapping[str, Any] | None) -> str:
    """The Markdown of one upstream report."""
    label = repro_label(p)
    project, api, tracker = framework_of(label)
    deviation = _deviation(p.get("known_deviation"))
    where = where_seen(p, records, provenance)
    parts = [f"# {md_text(title(p))}\n",
             f"<!-- written by refconv {md_text(refconv.__version__)} from problem {md_text(p.get('id', ''))} -->\n",
             _summary(p, records, provenance, label, project, api),
             "## Environment\n", _environment(p, records, provenance, label, project, where),
             "## Minimal reproduction\n", _reproduction(script, label, project),
             "## Expected and actual\n", _numbers(p, records, result),
             "## When it happens\n", _conditions(p) + _hardware(where),
             "## Workaround\n", _workaround(p, deviation, where),
             "## Related\n", _related(p, deviation, tracker)]
    return "\n".join(parts)


def title(p: Mapping[str, Any]) -> str:
    """The report's title for a tracker: '<label>: <API> <outcome in words> when <conditions>'."""
    label = repro_label(p)
    _, api, _ = framework_of(label)
    outcome = str(p.get("outcome", ""))
    words = OUTCOME_WORDS.get(outcome, f"gives '{outcome}'")
    conditions = p.get("conditions") or {}
    where = f" when {conditions_words(conditions)}" if conditions else f" on {p.get('minimal_case', '')}"
    return f"{label}: {api} {words}{where}"


def _summary(p: Mapping[str, Any], records: list[dict[str, Any]], provenance: Mapping[str, Any], label: str,
             project: str, api: str) -> str:
    spec = _spec(p)
    case = spec.describe() if spec is not None else "(case id not parseable by this refconv version)"
    outcome = str(p.get("outcome", ""))
    version = _framework_version(records, provenance, label)
    lines = [f"{md_text(project)} {md_text(version)}: {code_span(api)} "
             f"{md_text(OUTCOME_WORDS.get(outcome, outcome))} on this case: {md_text(case)} "
             f"(refconv case {code_span(p.get('minimal_case', ''))}).\n"]
    if spec is not None:
        rows_g, cols_g = geometry(spec)
        lines.append(f"The correct output has shape {md_text(_shape(spec, rows_g.out, cols_g.out))} "
                     f"(pads top/bottom/left/right {rows_g.before}/{rows_g.after}/{cols_g.before}/{cols_g.after}).\n")
    cases = p.get("cases") or []
    count = int(p.get("rows") or 0)
    lines.append(f"Found by refconv (a float64 NumPy reference conv2d held against frameworks)"
                 f" in {count or len(cases)} failing row(s) over {len(cases)} case(s); the case above is the smallest "
                 "that showed it.\n")
    if outcome == "broken":
        lines.append("It was found as a broken metamorphic relation (two calls that must agree did not); the script "
                     "below holds the minimal case against the reference, which a relation break need not fail.\n")
    if p.get("present_since"):
        lines.append(f"Present since {md_text(p['present_since'])}.\n")
    return "\n".join(lines)


def _shape(spec: ConvSpec, out_h: int, out_w: int) -> str:
    return str((spec.n, out_h, out_w, spec.c_out)) + " (NHWC)"


def _framework_version(records: list[dict[str, Any]], provenance: Mapping[str, Any], label: str) -> str:
    info = (provenance.get("adapters") or {}).get(label) or {}
    if isinstance(info, Mapping) and info.get("version"):
        return str(info["version"])
    return next((str(r.get("adapter_version")) for r in records if r.get("adapter") == label
                 and r.get("adapter_version")), "(version not recorded)")


def _environment(p: Mapping[str, Any], records: list[dict[str, Any]], provenance: Mapping[str, Any], label: str,
                 project: str, where: repro_hardware.Seen) -> str:
    info = (provenance.get("adapters") or {}).get(label) or {}
    info = info if isinstance(info, Mapping) else {}
    cpu = provenance.get("cpu") or {}
    cpu = cpu if isinstance(cpu, Mapping) else {}
    git = provenance.get("git") or {}
    git = git if isinstance(git, Mapping) else {}
    flags = " ".join(f for f in str(cpu.get("flags", "")).split() if CPU_FLAGS.match(f))
    items = [
        (project, _framework_version(records, provenance, label)),
        ("adapter label", label),
        ("Python", provenance.get("python", "")),
        ("NumPy", provenance.get("numpy_version", "")),
        ("OS", provenance.get("platform", "")),
        ("CPU", f"{cpu.get('model', '')} ({cpu.get('usable_cores', '?')} usable of {cpu.get('logical_cores', '?')}"
                f" logical cores)" if cpu else where.cpu_model),
        ("CPU vector flags", flags),
        ("CPU features (refconv)", where.cpu_features),
        ("kernels the failing row ran (isa)", where.isa),
        ("refconv", f"{provenance.get('refconv_version', refconv.__version__)} "
                    f"{str(git.get('commit', ''))[:12]}{' (dirty)' if git.get('dirty') else ''}"),
    ]
    settings = info.get("settings") or {}
    if isinstance(settings, Mapping):
        items += [(f"setting {k}", v) for k, v in settings.items()]
    env = info.get("env") or provenance.get("env") or {}
    if isinstance(env, Mapping):
        items += [(f"env {k}", v) for k, v in env.items() if RELEVANT_ENV.match(str(k))]
    lines = ["| | |", "|---|---|"]
    lines += [f"| {cell(md_text(k))} | {cell(code_span(v))} |" for k, v in items if str(v).strip()]
    started = provenance.get("started_utc")
    note = f"\nMeasured in a refconv run started {md_text(started)}.\n" if started else "\n"
    return "\n".join(lines) + "\n" + note


def _reproduction(script: str | None, label: str, project: str) -> str:
    if script is None:
        return "No standalone script: this refconv version cannot build one for this case.\n"
    direct = "import adapters" not in script
    needs = f"numpy and {project if direct else 'refconv with the ' + label + ' adapter'}"
    return (f"Save as `repro.py` and run `python repro.py` (needs {md_text(needs)}). It computes the expected output "
            "with a few lines of float64 NumPy, calls the framework, and exits with status 1 while the bug "
            "reproduces, 0 once the output agrees with the reference within tolerance (2: the framework could not "
            "be imported; 3: the output agrees but this machine does not run the kernels the bug was seen on, "
            "\"not reproducible on this CPU\", which is no fix). The tolerance per element is "
            "C * eps(dtype) * (|x| conv |w| + |b|): the rounding error any summation order may make.\n\n"
            + fence(script, "python"))


def _numbers(p: Mapping[str, Any], records: list[dict[str, Any]], result: Mapping[str, Any] | None) -> str:
    case = str(p.get("minimal_case", ""))
    engines = p.get("engines") or {}
    labels = list(dict.fromkeys([*map(str, p.get("adapters") or []), *map(str, engines)]))
    lines = ["Every engine on the minimal case (outcome; the kernels it ran; for a comparable output, elements beyond "
             "tolerance, max abs error and bound ratio = max |actual - expected| / (eps * bound), which a correct "
             "engine keeps below C):\n",
             "| engine | outcome | kernels | beyond tolerance | max abs err | bound ratio | C | shape | error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label in labels:
        row = _row(records, case, label) or {}
        outcome = engines.get(label) or row.get("outcome") or "(not run)"
        beyond = f"{_int(row.get('mismatched'))} / {_int(row.get('n_elements'))}" if row.get("n_elements") else ""
        shape = row.get("actual_shape") or ""
        if shape and row.get("expected_shape") and shape != row.get("expected_shape"):
            shape = f"{shape} (expected {row.get('expected_shape')})"
        error = " ".join(str(row.get("error") or "").split())
        error = error[:300] + " ..." if len(error) > 300 else error
        cells = [code_span(label), md_text(outcome), code_span(row["isa"]) if row.get("isa") else "",
                 md_text(beyond), _g(row.get("max_abs_err")),
                 _g(row.get("bound_ratio")), _g(row.get("tolerance_c")), md_text(shape),
                 code_span(error) if error else ""]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    text = "\n".join(lines) + "\n"
    if result is not None:
        code = result.get("returncode")
        status = f"{code}: {repro_hardware.EXIT_WORDS[code]}" if code in repro_hardware.EXIT_WORDS else f"{code}"
        text += (f"\nThe script above, run with Python {md_text(result.get('python', ''))} on "
                 f"{md_text(result.get('host_platform', ''))}, exited with status {md_text(status)}; its output:\n\n"
                 + fence(str(result.get("output", "")), "text"))
    elif p.get("outcome") == "mismatch":
        text += "\nRun the script for the element values (it prints the worst elements, expected and got).\n"
    return text


def _conditions(p: Mapping[str, Any]) -> str:
    conditions = p.get("conditions") or {}
    probes = int(p.get("probes") or 0)
    if not conditions and not probes:
        return "Not characterized: only the cases listed below are known to show it.\n\n" + _cases(p)
    text = f"It happens when {code_span(conditions_words(conditions))}.\n\n"
    if not probes and p.get("precision") is None:
        text += ("These conditions are what its failing cases share (a signature from grouping the run's rows, or "
                 "a known deviation's region), not a measured region: `refconv hunt` probes neighbours of the "
                 "minimal case to measure one.\n\n")
        return text + "As data:\n\n" + fence(f"when = {toml_inline(conditions)}", "toml") + "\n" + _cases(p)
    measured = [f"precision {_share(p.get('precision'))} (share of probed cases inside these conditions that fail)",
                f"recall {_share(p.get('recall'))} (share of failing probes that lie inside them)",
                f"{probes} probe case(s) run"]
    text += "Measured by refconv over neighbours of the minimal case: " + md_text("; ".join(measured)) + ".\n\n"
    text += "As data (the `when` form of refconv's known deviations):\n\n" + fence(f"when = {toml_inline(conditions)}",
                                                                                   "toml")
    return text + "\n" + _cases(p)


def _cases(p: Mapping[str, Any]) -> str:
    cases = [str(c) for c in p.get("cases") or []]
    shown = ", ".join(code_span(c) for c in cases[:10])
    more = f" and {len(cases) - 10} more" if len(cases) > 10 else ""
    return f"Cases that showed it: {shown}{more}.\n" if cases else ""


def _hardware(where: repro_hardware.Seen) -> str:
    """The kernels and CPU it was seen on, and what a machine needs to show it ('' when not recorded)."""
    if not (where.isa or where.cpu_features):
        return ""
    text = (f"\nSeen with the kernels {code_span(where.isa or '(not recorded)')} on "
            f"{md_text(where.cpu_model or 'a CPU')} with {code_span(where.cpu_features or '(features not recorded)')}.")
    if where.needs_words:
        text += (f" A machine shows it only with {md_text(where.needs_words)}; elsewhere the script says "
                 "\"not reproducible on this CPU\" (exit 3).")
    return text + "\n"


def _workaround(p: Mapping[str, Any], deviation: Any, where: repro_hardware.Seen | None = None) -> str:
    """The toggle that avoids it: the deviation's witness, a variant that passed the minimal case, a kernel setting."""
    engines = {str(k): str(v) for k, v in (p.get("engines") or {}).items()}
    label = repro_label(p)
    base = label.split(":")[0]
    toggles = _witness_toggles(deviation, label)
    passing = [v for v, outcome in engines.items() if outcome == "pass" and v.split(":")[0] == base and v != base
               and ":" in v]
    lines = []
    for variant in dict.fromkeys([*toggles, *passing]):
        checked = (" (checked: it passed the minimal case in this run)" if engines.get(variant) == "pass"
                   else " (from the known deviation's witness)")
        lines.append(f"- {toggle_words(variant)}{checked}")
    lines += [f"- {md_text(setting)}" for setting in (where.avoid if where else ())
              if not _said(setting, engines, base)]
    if not lines:
        return "No toggle known to avoid it.\n"
    return "\n".join(lines) + "\n"


def _said(setting: str, engines: Mapping[str, str], base: str) -> bool:
    """Is a kernel setting already given as a variant that passed (tf:onednn=off for TF_ENABLE_ONEDNN_OPTS=0)?"""
    cap = re.match(r"ONEDNN_MAX_CPU_ISA=(\S+)", setting)
    switch = {"TF_ENABLE_ONEDNN_OPTS=0": "onednn=off", "torch.backends.mkldnn.enabled": "mkldnn=off"}
    option = f"isa={cap.group(1).lower()}" if cap else next((o for w, o in switch.items() if setting.startswith(w)), "")
    return bool(option) and any(v.partition(":")[0] == base and option in v.split(":")[1:] and outcome == "pass"
                                for v, outcome in engines.items())


def toggle_words(variant: str) -> str:
    """What a user does to get an adapter variant, e.g. tf:onednn=off -> set TF_ENABLE_ONEDNN_OPTS=0."""
    name, _, options = variant.partition(":")
    said = []
    for option in options.split(":"):
        key, _, value = option.partition("=")
        if name in ("tf", "keras") and key == "onednn":
            said.append(f"set the environment variable `TF_ENABLE_ONEDNN_OPTS={'0' if value == 'off' else '1'}` "
                        "before TensorFlow is imported")
        elif name.startswith("torch") and key == "mkldnn":
            said.append("call it inside `with torch.backends.mkldnn.flags(enabled=False):` (or set "
                        "`torch.backends.mkldnn.enabled = False`)" if value == "off" else "enable mkldnn")
        elif key == "isa":
            said.append(f"set the environment variable {code_span('ONEDNN_MAX_CPU_ISA=' + value.upper())} before the "
                        "framework is imported (oneDNN's kernels capped at that level)")
        elif name.startswith("torch") and key == "threads":
            said.append(f"`torch.set_num_threads({md_text(value)})`")
        else:
            said.append(f"the variant {code_span(option)}")
    return f"{code_span(variant)}: " + "; ".join(said)


def _witness_toggles(deviation: Any, label: str) -> list[str]:
    """The variant labels a known deviation's toggle witness names for this label: `onednn=off` -> tf:onednn=off."""
    if deviation is None:
        return []
    found: list[str] = []
    for name in ("toggle", "witness"):
        value: Any = getattr(deviation, name, None)
        if isinstance(value, str) and value:
            found.append(value.removeprefix("toggle:").strip())
        elif isinstance(value, Mapping) and isinstance(value.get("toggle"), str):
            found.append(str(value["toggle"]))
        elif isinstance(getattr(value, "toggle", None), str):
            found.append(str(value.toggle))
    return [t if ":" in t else _toggled(label, t) for t in found if "=" in t]


def _toggled(label: str, toggle: str) -> str:
    """label with the toggle's options set (the deviations module's rule where it has one)."""
    try:
        from refconv.deviations import toggled

        return str(toggled(label, toggle))
    except (ImportError, RefconvError, ValueError):
        name, _, options = label.partition(":")
        merged = dict(o.partition("=")[::2] for o in options.split(":") if "=" in o)
        merged.update(dict(o.partition("=")[::2] for o in toggle.split(":") if "=" in o))
        return name + "".join(f":{k}={v}" for k, v in sorted(merged.items()))


def _related(p: Mapping[str, Any], deviation: Any, tracker: str) -> str:
    lines = []
    dev_id = p.get("known_deviation")
    if deviation is not None:
        upstream = str(getattr(deviation, "upstream", "") or "")
        link = md_link(upstream, upstream) if upstream.startswith(("http://", "https://")) else md_text(upstream)
        lines.append(f"- refconv known deviation {code_span(dev_id)}: {md_text(getattr(deviation, 'reason', ''))}")
        if upstream and upstream.rstrip("/") != tracker.rstrip("/"):
            lines.append(f"- upstream: {link}")
        else:
            lines.append("- no upstream report found yet" + (f"; file it at {md_link(tracker, tracker)}"
                                                                if tracker else ""))
    elif dev_id:
        lines.append(f"- refconv known deviation {code_span(dev_id)} (not in this refconv's data file)")
    else:
        lines.append("- NEW: no known deviation of refconv explains it" +
                     (f"; tracker: {md_link(tracker, tracker)}" if tracker else ""))
    return "\n".join(lines) + "\n"


def _deviation(dev_id: Any) -> Any:
    from refconv import deviations

    return deviations.get(dev_id)


def _g(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if number != number else f"{number:.3g}"


def _int(value: Any) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "?"


def _share(value: Any) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return "not measured"


def write_all(run_dir: Path | str, problems: Iterable[Any], rows: Any, provenance: Mapping[str, Any] | None,
              run: bool = False) -> list[Path]:
    """write_report for each problem; returns the report paths."""
    records = _records(rows)
    return [write_report(run_dir, problem, records, provenance, run=run) for problem in problems]
