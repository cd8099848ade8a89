"""Where a finding was seen (CPU, kernels), what a machine needs to run the same kernels, what avoids the bug.

Shared by the repro scripts of the forward conv (refconv.repro) and of the training ops (refconv.grad_repro):
the record a script carries and the plain-Python code with which it checks this machine (docs/hardware.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from refconv import hardware
from refconv.errors import RefconvError

# --- where a finding was seen: the CPU, the kernels, what a machine needs to run them, what avoids the bug ------

CPU_FLAGS_ENV = "REFCONV_REPRO_CPU_FLAGS"  # a stand-in for /proc/cpuinfo's flags in a script (tests, other CPUs)
EXIT_AGREES, EXIT_REPRODUCED, EXIT_CANNOT_RUN, EXIT_NOT_THIS_CPU = 0, 1, 2, 3
EXIT_WORDS = {EXIT_AGREES: "did NOT reproduce here", EXIT_REPRODUCED: "reproduced",
              EXIT_CANNOT_RUN: "could not run here", EXIT_NOT_THIS_CPU: "not reproducible on this CPU (other kernels)"}


@dataclass(frozen=True)
class Seen:
    """Where a finding was seen and what a machine needs to run the same kernels ('' and empty: not recorded)."""

    isa: str = ""
    cpu_model: str = ""
    cpu_features: str = ""
    needs: dict[str, Any] = field(default_factory=dict)  # hardware conditions, a known deviation's `when` form
    needs_words: str = ""
    avoid: tuple[str, ...] = ()  # settings that avoid the bug, in words

    def lines(self) -> list[str]:
        """The facts in words, one per line ([] when nothing was recorded)."""
        out = []
        if self.cpu_model or self.cpu_features:
            model, features = self.cpu_model or "(model not recorded)", self.cpu_features or "features not recorded"
            out.append(f"CPU: {model} ({features})")
        if self.isa:
            out.append(f"kernels (isa): {self.isa}")
        if self.needs_words:
            out.append(f"needs: {self.needs_words}")
        return out + [f"avoid: {a}" for a in self.avoid]


def _text(value: Any) -> str:
    """A row's text cell: NaN and None read as ''."""
    return "" if value is None or value != value else str(value).strip()


def seen(label: str, row: Mapping[str, Any], deviation: Any = None, passing_levels: Iterable[str] = ()) -> Seen:
    """Where the row's finding was seen and what it needs: its deviation's hardware conditions, else its kernels."""
    isa = _text(row.get("isa"))
    deviation = deviation if deviation is not None else _deviation(_text(row.get("known_deviation")))
    conditions = dict(getattr(deviation, "hardware", None) or {})
    if conditions:
        needs, words = conditions, f"{deviation.describe_hardware()} (known deviation {deviation.id})"
    elif isa:
        needs, words = {"isa": isa}, kernel_needs(label, isa, _text(row.get("cpu_features")))
    else:
        needs, words = {}, ""
    return Seen(isa, _text(row.get("cpu_model")), _text(row.get("cpu_features")), needs, words,
                tuple(avoid_settings(label, isa, passing_levels)))


def _deviation(dev_id: str) -> Any:
    """The known deviation of that id, or None."""
    from refconv import deviations

    return deviations.get(dev_id)


def _engine(label: str) -> str:
    """The engine of an adapter label: tf@2.19.1:onednn=off -> tf."""
    return label.partition(":")[0].partition("@")[0]


def _onednn_switch(label: str) -> str:
    """How the label's engine turns oneDNN on, in words ('' for an engine without a known switch)."""
    engine = _engine(label)
    if engine in ("tf", "keras"):
        return "TensorFlow's oneDNN on (TF_ENABLE_ONEDNN_OPTS=1, or its default on this CPU)"
    return "torch.backends.mkldnn enabled" if engine.startswith("torch") else ""


def kernel_needs(label: str, isa: str, cpu_features: str = "") -> str:
    """What a machine needs to run kernels `isa` again, in words."""
    family, _, level = isa.partition(":")
    if family == "onednn" and level in hardware.ONEDNN_LEVELS:
        switch = _onednn_switch(label)
        return (f"the kernels {isa}: oneDNN dispatching to {level}, on a CPU with "
                f"{' '.join(hardware.ONEDNN_LEVELS[level])} (ONEDNN_MAX_CPU_ISA={level.upper()} where it offers more)"
                + (f", {switch}" if switch else ""))
    if family == "eigen":
        return f"the kernels {isa}: TensorFlow's oneDNN off (TF_ENABLE_ONEDNN_OPTS=0, or a CPU where it is off)"
    like = f": a CPU like the one it was seen on ({cpu_features})" if cpu_features else ""
    return f"the kernels {isa}{like}"


def avoid_settings(label: str, isa: str, passing_levels: Iterable[str] = ()) -> list[str]:
    """Settings that avoid a bug of oneDNN's kernels: a cap at a level seen to pass, the engine's oneDNN switch."""
    family, _, level = isa.partition(":")
    if family != "onednn":
        return []
    out = []
    order = list(hardware.ONEDNN_LEVELS)
    passing = [lv for lv in dict.fromkeys(passing_levels) if lv in order and lv != level]
    if passing:
        best = max(passing, key=order.index)
        out.append(f"ONEDNN_MAX_CPU_ISA={best.upper()} before the framework's import (oneDNN's {best} kernels "
                   "passed this case)")
    engine = _engine(label)
    if engine in ("tf", "keras"):
        out.append("TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow's import (Eigen's kernels instead of oneDNN's)")
    elif engine.startswith("torch"):
        out.append("torch.backends.mkldnn.enabled = False (PyTorch's own kernels instead of oneDNN's)")
    return out


def passing_levels(rows: Iterable[Mapping[str, Any]], label: str) -> list[str]:
    """oneDNN levels at which the label's engine passed, among rows of one case (their isa, e.g. tf:isa=avx2's)."""
    engine = _engine(label)
    levels = []
    for r in rows:
        family, _, level = _text(r.get("isa")).partition(":")
        if family == "onednn" and level and r.get("outcome") == "pass" and _engine(str(r.get("adapter", ""))) == engine:
            levels.append(level)
    return list(dict.fromkeys(levels))


def level_name(text: str) -> str:
    """A label's isa option as refconv's level name ('AVX2' -> 'avx2'); an unknown name as given, lower case."""
    try:
        return hardware.onednn_level_name(text)
    except RefconvError:
        return text.strip().lower()


_SEEN = """
# Where the finding was seen (refconv's row) and what a machine needs to run the same kernels again. When the
# output agrees here but these do not hold, the script says "not reproducible on this CPU" and exits 3, not 0.
SEEN_CPU = {cpu!r}
SEEN_CPU_FEATURES = {features!r}
SEEN_ISA = {isa!r}  # the kernels the engine dispatched to on this case there
NEEDS = {needs!r}  # conditions on the facts of facts_here() (a refconv known deviation's `when` form)
NEEDS_WORDS = {needs_words!r}
AVOID = {avoid!r}  # settings that avoid the bug
ONEDNN_LEVELS = {levels!r}  # oneDNN's ISA levels, lowest first, with the CPU flags each needs
ONEDNN_ALIASES = {aliases!r}
KERNEL_FLAGS = {kernel_flags!r}  # the CPU flags refconv's cpu_features names
ARM_FLAGS = {arm_flags!r}
X86_LEVELS = {x86!r}
"""

# Pure Python: the hardware facts of the machine the script runs on, and the judgement of NEEDS on them.
_GATE = '''

def cpu_flags():
    """This CPU's flags: REFCONV_REPRO_CPU_FLAGS when set (a stand-in CPU), else /proc/cpuinfo; None if unknown."""
    forced = os.environ.get("REFCONV_REPRO_CPU_FLAGS")
    if forced is not None:
        return set(forced.split())
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return None


def x86_level(flags):
    """'x86-64-v4' ... 'x86-64' for x86 flags ('' for others)."""
    if "sse2" not in flags and "sse4_1" not in flags:
        return ""
    level = "x86-64"
    for name, needed in X86_LEVELS:
        if not all(f in flags for f in needed):
            break
        level = name
    return level


def cpu_features(flags):
    """refconv's cpu_features text: the x86-64 level and the kernel-selecting flags present."""
    level = x86_level(flags)
    if not level:
        import platform

        return " ".join([platform.machine()] + [f for f in ARM_FLAGS if f in flags]).strip()
    return " ".join([level] + [f for f in KERNEL_FLAGS if (f in flags if f != "amx" else "amx_tile" in flags)])


def onednn_level(flags):
    """The level oneDNN dispatches to here: the CPU's highest, capped by ONEDNN_MAX_CPU_ISA ('' if none runs)."""
    levels = [lv for lv, needed in ONEDNN_LEVELS.items() if all(f in flags for f in needed)]
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().lower()
    cap = ONEDNN_ALIASES.get(cap, cap)
    if not levels or cap not in ONEDNN_LEVELS:
        return levels[-1] if levels else ""
    order = list(ONEDNN_LEVELS)
    allowed = [lv for lv in levels if order.index(lv) <= order.index(cap)
               and not (cap.startswith("avx2") and lv.startswith("avx512"))]
    return allowed[-1] if allowed else ""


def onednn_isa(flags):
    """'onednn:<level>' for this CPU and cap."""
    level = onednn_level(flags)
    return "onednn:" + level if level else "onednn"


def facts_here(flags):
    """The facts NEEDS speaks of, here: isa (None when this script cannot tell), kernels, onednn_isa, cpu_*."""
    try:
        isa = kernels_here(flags) or None
    except Exception:  # a framework without the API asked: the kernels here are not known
        isa = None
    features = cpu_features(flags)
    words = features.split()
    family, _, level = (isa or "").partition(":")
    first = words[0] if words else ""
    onednn = (level if family == "onednn" else "") if isa else None
    facts = {"isa": isa, "kernels": family or None, "onednn_isa": onednn, "cpu_features": features,
             "x86_level": int(first[-1]) if first.startswith("x86-64-v") else 1 if first == "x86-64" else 0}
    facts.update({"cpu_" + flag: flag in words for flag in KERNEL_FLAGS})
    return facts


def holds(value, wanted):
    """One `when` condition: a value, a list of values, or a range {min, max}."""
    if isinstance(wanted, dict):
        return value is not None and wanted.get("min", value) <= value <= wanted.get("max", value)
    if isinstance(wanted, list):
        return value in wanted
    return value == wanted


def hardware_here():
    """(do NEEDS hold on this machine, what runs here in words); they hold when nothing was recorded."""
    if not NEEDS:
        return True, ""
    flags = cpu_flags()
    if flags is None:
        return True, "this CPU's flags are unknown (no /proc/cpuinfo): judged as if they hold"
    here = facts_here(flags)
    unknown = [key for key in NEEDS if here.get(key) is None]
    ok = all(holds(here.get(key), wanted) for key, wanted in NEEDS.items() if key not in unknown)
    if unknown and SEEN_CPU_FEATURES:  # the kernels here are not known: the CPU must be like the one it was seen on
        ok = ok and here["cpu_features"] == SEEN_CPU_FEATURES
    return ok, f"here: kernels {here['isa'] or '(not known to this script)'} on a CPU with {here['cpu_features']}"


def say_seen():
    """Where the finding was seen, and what avoids it."""
    if SEEN_ISA or SEEN_CPU_FEATURES:
        print(f"seen with kernels {SEEN_ISA or '(not recorded)'} on {SEEN_CPU or 'a CPU'} ({SEEN_CPU_FEATURES})")
    for setting in AVOID:
        print(f"avoid: {setting}")


def not_this_cpu():
    """3, saying "not reproducible on this CPU (needs ...)", when NEEDS do not hold here; None when they do."""
    ok, here = hardware_here()
    if ok:
        return None
    print(f"NOT REPRODUCIBLE ON THIS CPU: the output agrees here, but not reproducible on this CPU (needs "
          f"{NEEDS_WORDS}); {here}. This is no fix: run it where the kernels it was seen on run.")
    return 3
'''

# `kernels_here(flags)` per template: the kernels the engine runs here, '' when the script cannot tell.
KERNELS_TF = '''

def kernels_here(flags):
    """TensorFlow's kernels for this case here: oneDNN at this CPU's level when IsMklEnabled(), else Eigen's."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return ""
    from tensorflow.python.util import _pywrap_util_port

    if DTYPE == "float64" or not _pywrap_util_port.IsMklEnabled():
        return "eigen"
    return onednn_isa(flags)
'''

KERNELS_TORCH = '''

def kernels_here(flags):
    """PyTorch's kernels here: oneDNN at this CPU's level where the row ran oneDNN and mkldnn is on, else ATen's."""
    import torch

    mkldnn = MKLDNN and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    if SEEN_ISA.startswith("onednn") and mkldnn:
        return onednn_isa(flags)
    return "aten:" + torch.backends.cpu.get_cpu_capability().lower()
'''

KERNELS_CPU = '''

def kernels_here(flags):
    """Not known to this script (the engine dispatches inside): judged by the CPU's features instead."""
    return ""
'''

# A refconv adapter (the generic template, the training-op scripts): its own `isa(spec)` where it has one.
KERNELS_ADAPTER = '''

def kernels_here(flags):
    """The kernels refconv's adapter LABEL reports for this case here (its isa(spec)); '' when it cannot tell."""
    import adapters
    from refconv.spec import ConvSpec

    isa = getattr(adapters.load(LABEL), "isa", None)
    return str(isa(ConvSpec.from_id(CASE)) or "") if callable(isa) else ""
'''


def seen_block(where: Seen | None) -> str:
    """The script's record of where the finding was seen, and the code that checks it here."""
    where = where or Seen()
    return _SEEN.format(
        cpu=where.cpu_model, features=where.cpu_features, isa=where.isa, needs=where.needs,
        needs_words=where.needs_words, avoid=list(where.avoid), levels=hardware.ONEDNN_LEVELS,
        aliases=hardware.ONEDNN_ALIASES, kernel_flags=hardware.KERNEL_FLAGS, arm_flags=hardware.ARM_KERNEL_FLAGS,
        x86=hardware._X86_LEVELS,
    ) + _GATE


def docstring_safe(text: str) -> str:
    """Text that can sit inside a triple-quoted docstring: backslashes doubled, triple quotes broken, and
    control characters and undecodable bytes (surrogates) as escapes, so the file stays valid UTF-8."""
    text = text.replace("\\", "\\\\").replace('"""', "'''")
    return "".join(c if c == "\n" or c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
