"""The default engine set holds both sides of TensorFlow's oneDNN switch; --isa-matrix adds every oneDNN level."""

from __future__ import annotations

import pytest

from refconv import hardware
from refconv.commands import run as run_command

AVX2_ONLY = frozenset({"sse2", "sse4_1", "sse4_2", "ssse3", "cx16", "lahf_lm", "popcnt", "avx", "avx2", "bmi1",
                       "bmi2", "f16c", "fma", "movbe", "abm"})  # a Zen 2/3-like CPU: no AVX-512, no VNNI
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx512_vnni",
                               "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}


def test_split_labels_joins_options_written_after_a_comma() -> None:
    assert run_command.split_labels("tf:onednn=on,isa=avx2") == ["tf:onednn=on:isa=avx2"]
    assert run_command.split_labels("numpy, torch:isa=avx2 ,keras") == ["numpy", "torch:isa=avx2", "keras"]
    assert run_command.split_labels("mypkg.conv:MyConv,mode=fast") == ["mypkg.conv:MyConv:mode=fast"]


@pytest.mark.parametrize(("env", "flags", "on"), [
    ({}, SAPPHIRE_RAPIDS, True),
    ({}, AVX2_ONLY, False),  # the AMD EPYC of the report: TF's default is oneDNN off
    ({"TF_ENABLE_ONEDNN_OPTS": "1"}, AVX2_ONLY, True),
    ({"TF_ENABLE_ONEDNN_OPTS": "false"}, SAPPHIRE_RAPIDS, False),
    ({"TF_ENABLE_ONEDNN_OPTS": "maybe"}, SAPPHIRE_RAPIDS, True),  # TF warns and keeps its default
    ({}, AVX2_ONLY | {"avx_vnni"}, True),  # Alder Lake: AVX-VNNI alone turns it on
])
def test_tf_onednn_expected_follows_tensorflows_rule(env: dict[str, str], flags: frozenset[str], on: bool) -> None:
    assert hardware.tf_onednn_expected(env, flags) is on


def test_default_set_adds_the_onednn_side_where_tf_defaults_to_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "tf_onednn_expected", lambda env=None, flags=None: False)
    assert run_command.other_kernel_sides(["numpy", "tf", "keras"]) == ["tf:onednn=on"]
    assert run_command.other_kernel_sides(["numpy", "torch"]) == []
    monkeypatch.setattr(hardware, "tf_onednn_expected", lambda env=None, flags=None: True)
    assert run_command.other_kernel_sides(["numpy", "tf", "keras"]) == []  # off is the witness toggle already


def test_isa_matrix_runs_each_onednn_engine_at_every_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX2_ONLY)
    matrix = run_command.isa_matrix(["numpy", "tf", "torch", "tf:onednn=off", "torch:mkldnn=off", "jax"])
    assert matrix == ["tf:isa=sse41:onednn=on", "tf:isa=avx:onednn=on", "tf:isa=avx2:onednn=on",
                      "torch:isa=sse41", "torch:isa=avx", "torch:isa=avx2"]


def test_a_toggle_that_turns_onednn_off_drops_its_cap() -> None:
    """tf:isa=avx2:onednn=on's witness is tf:onednn=off (tf:isa=...:onednn=off is refused: nothing to cap)."""
    from refconv.deviations import toggled

    assert toggled("tf:isa=avx512_core_amx:onednn=on", "onednn=off") == "tf:onednn=off"
    assert toggled("torch:isa=avx2", "mkldnn=off") == "torch:isa=avx2:mkldnn=off"  # the cap still holds ATen


def test_onednn_levels_and_caps() -> None:
    assert hardware.onednn_levels(AVX2_ONLY) == ["sse41", "avx", "avx2"]
    assert hardware.onednn_level_in_force({}, SAPPHIRE_RAPIDS) == "avx512_core_amx"
    assert hardware.onednn_level_in_force({"ONEDNN_MAX_CPU_ISA": "AVX2"}, SAPPHIRE_RAPIDS) == "avx2"
    assert hardware.onednn_level_in_force({"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI"}, SAPPHIRE_RAPIDS) == "avx2_vnni"
    assert hardware.onednn_level_in_force({"ONEDNN_MAX_CPU_ISA": "avx10_1_512"}, SAPPHIRE_RAPIDS) == "avx512_core_fp16"
    assert hardware.onednn_level_in_force({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, AVX2_ONLY) == "avx2"  # never up
    assert hardware.check_cap("AVX2", AVX2_ONLY) == "avx2"
    with pytest.raises(ValueError, match="lacks avx512f.*capping oneDNN only works downward.*levels sse41, avx, avx2"):
        hardware.check_cap("avx512_core", AVX2_ONLY)
    with pytest.raises(ValueError, match="unknown oneDNN ISA level 'avx9'; known: sse41"):
        hardware.check_cap("avx9", AVX2_ONLY)


def test_cpu_features_text_and_facts() -> None:
    assert hardware.describe_features(AVX2_ONLY) == "x86-64-v3 avx2 fma"
    assert hardware.describe_features(SAPPHIRE_RAPIDS) == (
        "x86-64-v4 avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx")
    assert hardware.describe_features({"fp", "asimd", "sve", "i8mm"}, "aarch64") == "aarch64 asimd sve i8mm"
    facts = hardware.facts("onednn:avx2", "x86-64-v3 avx2 fma")
    assert facts["kernels"] == "onednn" and facts["onednn_isa"] == "avx2" and facts["x86_level"] == 3
    assert facts["cpu_avx2"] and not facts["cpu_avx512f"]
    assert hardware.facts("eigen", "")["onednn_isa"] == "" and hardware.facts(None, None)["kernels"] == ""


@pytest.mark.parametrize(("text", "level"), [
    ("Intel AVX2", "avx2"),
    ("Intel AVX2 with Intel DL Boost", "avx2_vnni"),
    ("Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions", "avx512_core"),
    ("Intel AVX-512 with Intel DL Boost", "avx512_core_vnni"),
    ("Intel AVX-512 with Intel DL Boost and bfloat16 support", "avx512_core_bf16"),
    ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support", "avx512_core_fp16"),
    ("Intel AVX 10.1", "avx512_core_fp16"),
    ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit "
     "integer support", "avx512_core_amx"),
    ("Intel AVX10.1 and Intel AMX with bfloat16 and 8-bit integer support", "avx512_core_amx"),
    ("Intel SSE4.1", "sse41"),
    ("Intel AVX", "avx"),
])
def test_onednn_verbose_isa_text(text: str, level: str) -> None:
    """The isa: texts oneDNN 3.7 (TF 2.21) and torch 2.13's oneDNN printed here at each cap (measured)."""
    assert hardware.onednn_level_text(text) == level
