"""`refconv compare`: a planted regression gates (exit 1), an identical comparison passes (exit 0)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from refconv.cli import main as cli
from refconv.report import compare_runs, normalize

RUNS = Path(__file__).parent / "data" / "runs"
PLANTED = "n1-6x6x2-k3x3x2-s2x2-same-f32"


def _rows(**columns: list) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"case_id": [f"c{i}" for i in range(n)], "adapter": ["tf"] * n, "outcome": ["pass"] * n}
    return normalize(pd.DataFrame({**base, **columns}))


def test_planted_regression_gates_with_exit_1(tmp_path, capsys):
    code = cli(["compare", str(RUNS / "base"), str(RUNS / "regressed"), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("REGRESSED: 1 regression(s) over 12 matched rows")
    md = (tmp_path / "compare.md").read_text()
    assert PLANTED in md and "| pass | mismatch | yes |" in md
    page = (tmp_path / "compare.html").read_text()
    assert PLANTED in page and "REGRESSED" in page


def test_identical_runs_exit_0(tmp_path, capsys):
    assert cli(["compare", str(RUNS / "base"), str(RUNS / "base"), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("OK: 0 regression(s) over 12 matched rows")


def test_the_fix_direction_is_not_a_regression(tmp_path):
    assert cli(["compare", str(RUNS / "regressed"), str(RUNS / "base"), "--out", str(tmp_path)]) == 0
    assert "| mismatch | pass | no |" in (tmp_path / "compare.md").read_text()


@pytest.mark.parametrize("args", [["/nonexistent/a", str(RUNS / "base")], [str(RUNS / "base"), "/nonexistent/b"]])
def test_bad_paths_print_one_line_and_exit_2(args, capsys):
    assert cli(["compare", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "does not exist" in err


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli(["compare", str(RUNS / "base"), str(RUNS / "base"), "--out", str(blocker / "sub")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_timing_regression_needs_both_the_factor_and_the_milliseconds():
    base = _rows(time_median_ms=[10.0, 10.0, 1.0, 10.0])
    new = _rows(time_median_ms=[16.0, 14.0, 1.9, 9.0])  # 1.6x +6ms; 1.4x; 1.9x but +0.9 ms; faster
    diff = compare_runs(base, new)
    assert diff.timing_regressions["case_id"].tolist() == ["c0"]
    assert not diff.regressed  # listed, never gating alone: speed gates per adapter (refconv.report.speed)


def test_error_growth_beyond_factor_with_a_floor_of_one_rounding_unit():
    base = _rows(bound_ratio=[0.5, 0.5, 3.0, 0.0])
    new = _rows(bound_ratio=[4.0, 12.0, 31.0, 9.0])  # 4 < 10*1; 12 > 10*1; 31 > 10*3; 9 < 10*1
    diff = compare_runs(base, new, error_factor=10)
    assert diff.error_growth["case_id"].tolist() == ["c1", "c2"]  # sorted by factor: 12 > 31/3
    assert diff.error_growth["factor"].tolist() == pytest.approx([12.0, 31 / 3])


def test_cases_in_one_run_only_are_listed_but_do_not_gate():
    base = _rows(case_id=["a", "b"])
    new = _rows(case_id=["b", "c"])
    diff = compare_runs(base, new)
    assert diff.only_base["case_id"].tolist() == ["a"] and diff.only_new["case_id"].tolist() == ["c"]
    assert not diff.regressed


def test_rows_are_matched_by_adapter_label_including_the_variant():
    base = _rows(case_id=["a", "a"], adapter=["tf", "tf:onednn=off"], outcome=["pass", "pass"])
    new = _rows(case_id=["a", "a"], adapter=["tf", "tf:onednn=off"], outcome=["pass", "mismatch"])
    diff = compare_runs(base, new)
    assert diff.outcome_changes[["adapter", "regression"]].values.tolist() == [["tf:onednn=off", True]]


def test_pass_to_unsupported_is_a_regression_but_raised_to_mismatch_is_only_a_change():
    base = _rows(outcome=["pass", "raised"])
    new = _rows(outcome=["unsupported", "mismatch"])
    changes = compare_runs(base, new).outcome_changes.set_index("case_id")
    assert changes.loc["c0", "regression"] and not changes.loc["c1", "regression"]


def test_bad_threshold_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli(["compare", str(RUNS / "base"), str(RUNS / "base"), "--time-factor", "0"])
    assert exc.value.code == 2


# --- no overlap, partial overlap, --require-all, unlike runs (issue 14) ---------------------------


def _write_run(path: Path, frame: pd.DataFrame, selection: str = "edge", seed: int = 0) -> Path:
    import json

    path.mkdir(parents=True)
    frame.to_csv(path / "results.csv", index=False)
    (path / "run.json").write_text(json.dumps({"selection": selection, "seed": seed}))
    return path


def test_runs_without_a_shared_row_are_an_error_naming_both_sides(tmp_path, capsys):
    base = _write_run(tmp_path / "a", _rows(case_id=["a", "b"], adapter=["tf", "tf"]))
    new = _write_run(tmp_path / "b", _rows(case_id=["a", "b"], adapter=["tf:onednn=off"] * 2))
    assert cli(["compare", str(base), str(new), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "share no row" in err
    assert "'tf'" in err and "'tf:onednn=off'" in err and err.count("2 case(s)") == 2


def test_partial_overlap_is_reported(tmp_path, capsys):
    base = _write_run(tmp_path / "a", _rows(case_id=["a", "b", "c"]))
    new = _write_run(tmp_path / "b", _rows(case_id=["b", "c", "d"]))
    assert cli(["compare", str(base), str(new), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "partial overlap: 2 row(s) matched, 1 only in base, 1 only in new" in out
    assert "partial overlap" in (tmp_path / "o" / "compare.md").read_text()


def test_require_all_makes_a_row_missing_from_the_new_run_a_regression(tmp_path, capsys):
    base = _write_run(tmp_path / "a", _rows(case_id=["a", "b", "c"]))
    new = _write_run(tmp_path / "b", _rows(case_id=["b", "c", "d"]))
    assert cli(["compare", str(base), str(new), "--out", str(tmp_path / "o"), "--require-all"]) == 1
    assert capsys.readouterr().out.startswith("REGRESSED: 1 regression(s) over 2 matched rows")
    # a row only in the new run never regresses
    assert cli(["compare", str(new), str(new), "--out", str(tmp_path / "p"), "--require-all"]) == 0


def test_runs_of_different_selections_or_seeds_say_so(tmp_path, capsys):
    base = _write_run(tmp_path / "a", _rows(case_id=["a"]), selection="edge,random:200", seed=0)
    new = _write_run(tmp_path / "b", _rows(case_id=["a"]), selection="edge,random:50", seed=3)
    assert cli(["compare", str(base), str(new), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "different case selections: base 'edge,random:200', new 'edge,random:50'" in out
    assert "different seeds: base 0, new 3" in out


def test_rows_with_a_relation_column_are_keyed_by_it():
    base = _rows(case_id=["a", "a"], relation=["layout", "batch_split"], outcome=["pass", "pass"])
    new = _rows(case_id=["a", "a"], relation=["layout", "batch_split"], outcome=["pass", "mismatch"])
    diff = compare_runs(base, new)
    assert diff.matched == 2 and diff.regressions == 1
    assert diff.outcome_changes["relation"].tolist() == ["batch_split"]


# --- hardware: rows whose kernels or CPU changed are set apart (docs/hardware.md) ---------------------

AMX, AVX2 = "onednn:avx512_core_amx", "onednn:avx2"
SPR, HSW = "x86-64-v4 avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx", "x86-64-v3 avx2 fma"


def test_rows_that_differ_only_in_isa_are_set_apart_never_regressions_or_fixes():
    base = _rows(outcome=["pass", "mismatch", "pass", "pass"], isa=[AMX] * 3 + ["eigen"], cpu_features=[SPR] * 4)
    new = _rows(outcome=["mismatch", "pass", "pass", "pass"], isa=[AVX2] * 3 + ["eigen"], cpu_features=[SPR] * 4)
    diff = compare_runs(base, new)
    assert not diff.regressed and diff.regressions == 0 and diff.outcome_changes.empty
    assert diff.hardware_rows["case_id"].tolist()[:2] == ["c0", "c1"]  # the outcome changes first
    assert len(diff.hardware_rows) == 3 and diff.hardware_outcome_changes == 2
    change = diff.kernel_changes.to_dict("records")
    assert [(c["adapter"], c["isa_base"], c["isa_new"], c["rows"], c["outcome_changes"]) for c in change] == \
        [("tf", AMX, AVX2, 3, 2)]
    assert diff.exit_status == 3


def test_compare_says_kernels_changed_first_and_exits_3(tmp_path, capsys):
    base = _write_run(tmp_path / "a", _rows(outcome=["pass", "pass"], isa=[AMX, "eigen"], cpu_features=[SPR] * 2))
    new = _write_run(tmp_path / "b", _rows(outcome=["mismatch", "pass"], isa=[AVX2, "eigen"], cpu_features=[SPR] * 2))
    assert cli(["compare", str(base), str(new), "--out", str(tmp_path / "o")]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("KERNELS CHANGED: 1 of 2 matched row(s) ran on other kernels or another CPU")
    assert lines[1] == f"kernels changed: tf: {AMX} -> {AVX2} (1 row(s), 1 outcome change(s))"
    assert lines[2].startswith("OK, KERNELS CHANGED: 0 regression(s) over 2 matched rows (1 on changed kernels")
    md = (tmp_path / "o" / "compare.md").read_text()
    assert md.index("KERNELS CHANGED") < md.index("## Kernels changed") < md.index("## Outcome changes")
    assert f"{AMX} → {AVX2}" in md
    page = (tmp_path / "o" / "compare.html").read_text()
    assert page.index("KERNELS CHANGED") < page.index("Outcome changes")


def test_a_changed_cpu_sets_rows_apart_even_with_the_same_kernel_names(tmp_path, capsys):
    base = _write_run(tmp_path / "a", _rows(outcome=["pass"], isa=["mlas:avx512f"], cpu_features=[SPR]))
    new = _write_run(tmp_path / "b", _rows(outcome=["mismatch"], isa=["mlas:avx512f"], cpu_features=[HSW]))
    assert cli(["compare", str(base), str(new), "--out", str(tmp_path / "o")]) == 3
    assert f"tf: mlas:avx512f (same kernels); CPU {SPR} -> {HSW}" in capsys.readouterr().out


def test_a_regression_on_unchanged_kernels_still_exits_1_beside_changed_ones(tmp_path, capsys):
    base = _write_run(tmp_path / "a", _rows(outcome=["pass", "pass"], isa=[AMX, "eigen"], cpu_features=[SPR] * 2))
    new = _write_run(tmp_path / "b", _rows(outcome=["mismatch", "raised"], isa=[AVX2, "eigen"],
                                           cpu_features=[SPR] * 2))
    assert cli(["compare", str(base), str(new), "--out", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("KERNELS CHANGED") and "REGRESSED: 1 regression(s) over 2 matched rows" in out


def test_kernels_changed_without_an_outcome_change_exit_0():
    base = _rows(isa=[AMX, AMX], cpu_features=[SPR] * 2)
    new = _rows(isa=[AVX2, AVX2], cpu_features=[SPR] * 2)
    diff = compare_runs(base, new)
    assert diff.exit_status == 0 and len(diff.hardware_rows) == 2


@pytest.mark.parametrize("side", ["base", "new"])
def test_a_run_without_the_hardware_columns_compares_as_before(side):
    old = _rows(outcome=["pass", "pass"]).drop(columns=["isa", "cpu_features"])  # a run older than the columns
    known = _rows(outcome=["pass", "pass"], isa=[AMX] * 2, cpu_features=[SPR] * 2)
    regressed = ["mismatch", "pass"]
    base, new = (old, known.assign(outcome=regressed)) if side == "base" else (known, old.assign(outcome=regressed))
    diff = compare_runs(base, new)
    assert diff.hardware_rows.empty and diff.regressions == 1 and diff.exit_status == 1


def test_speed_across_changed_kernels_is_flagged_never_gating():
    n = 6
    base = _rows(case_id=[f"c{i}" for i in range(n)], isa=[AMX] * n, cpu_features=[SPR] * n,
                 time_min_ms=[1.0] * n, time_median_ms=[1.0] * n)
    new = _rows(case_id=[f"c{i}" for i in range(n)], isa=[AVX2] * n, cpu_features=[SPR] * n,
                time_min_ms=[3.0] * n, time_median_ms=[3.0] * n)
    diff = compare_runs(base, new)
    assert not diff.regressed and diff.timing_regressions.empty
    row = diff.speed.iloc[0]
    assert row["kernels"] == "changed" and not row["regression"] and "not gated" in row["flag"]
    assert "slower beyond the factor" in row["flag"]


def test_compare_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        cli(["compare", "--help"])
    out = capsys.readouterr().out
    assert "3  nothing regressed, but rows whose kernels changed differ in outcome" in out
    assert "2  nothing compared" in out and "1  a regression" in out
