"""Reports of a run: the DataFrame summaries, summary.md / report.html, escaping, scale and bad input."""

from __future__ import annotations

import html
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from refconv.cli import main as cli
from refconv.errors import UsageError
from refconv.report import (
    by,
    capability,
    deviations,
    findings,
    load_run,
    normalize,
    outcomes,
    timings,
    worst,
    write_reports,
)
from refconv.report.html import link
from refconv.rows import COLUMNS

RUNS = Path(__file__).parent / "data" / "runs"
PLANTED = "n1-6x6x2-k3x3x2-s2x2-same-f32"


def _synthetic():  # tests/data/runs/synthetic.py, loaded by path (tests/ is not a package)
    spec = importlib.util.spec_from_file_location("refconv_synthetic_runs", RUNS / "synthetic.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(RUNS / name, tmp_path / name))


def _rows(**columns: list) -> pd.DataFrame:
    """A hand-made run: given columns, the rest filled in by normalize()."""
    return normalize(pd.DataFrame(columns))


# --- loading -------------------------------------------------------------------------------------


def test_load_run_reads_the_stored_fixture_with_every_column():
    df = load_run(RUNS / "base")
    assert len(df) == 12
    assert set(COLUMNS) <= set(df.columns)
    assert {"framework", "variant", "stride", "dilation"} <= set(df.columns)
    assert df["known_deviation"].eq("").all()  # '' stays '', not NaN
    assert df.loc[df["case_id"] == PLANTED, "stride"].item() == "2x2"


def test_load_run_keeps_unknown_extra_columns_and_fills_missing_ones(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"case_id": ["n1-4x4x1-k2x2x1-s2x2-same-f32"], "adapter": ["tf:onednn=off"], "outcome": ["pass"],
                  "host": ["box7"]}).to_csv(run / "results.csv", index=False)
    df = load_run(run)
    assert df["host"].item() == "box7"
    assert df["framework"].item() == "tf" and df["variant"].item() == "onednn=off"
    assert pd.isna(df["bound_ratio"].item())
    paths = write_reports(run)  # a minimal run still renders
    assert [p.name for p in paths] == ["summary.md", "report.html"]


@pytest.mark.parametrize("make", ["missing", "file", "empty_dir"])
def test_bad_run_dirs_raise_one_line_usage_errors(tmp_path, make):
    target = tmp_path / "x"
    if make == "file":
        target.write_text("not a run")
    elif make == "empty_dir":
        target.mkdir()
    with pytest.raises(UsageError, match="x"):
        load_run(target)


def test_cli_report_on_a_bad_path_prints_one_line_and_exits_2(tmp_path, capsys):
    assert cli(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err


def test_a_file_without_the_required_columns_is_refused(tmp_path):
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="case_id"):
        load_run(tmp_path)


# --- summaries -----------------------------------------------------------------------------------


def test_outcomes_counts_and_pass_rate_leave_unsupported_out():
    df = _rows(case_id=list("abcde"), adapter=["tf"] * 4 + ["torch"],
               outcome=["pass", "pass", "mismatch", "unsupported", "raised"])
    table = outcomes(df)
    assert table.loc["tf", "pass"] == 2 and table.loc["tf", "mismatch"] == 1 and table.loc["tf", "unsupported"] == 1
    assert table.loc["tf", "total"] == 4
    assert table.loc["tf", "pass_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert table.loc["torch", "pass_rate"] == 0.0


def test_outcomes_of_the_stored_runs():
    assert outcomes(load_run(RUNS / "base")).loc["numpy", ["pass", "unsupported"]].tolist() == [11, 1]
    regressed = outcomes(load_run(RUNS / "regressed"))
    assert regressed.loc["numpy", ["pass", "mismatch"]].tolist() == [10, 1]
    assert regressed.loc["numpy", "pass_rate"] == pytest.approx(10 / 11, abs=1e-4)


def test_findings_exclude_pass_and_unsupported_and_keep_known_deviations():
    df = _rows(case_id=["a", "b", "c", "d"], adapter=["tf"] * 4, outcome=["pass", "unsupported", "raised", "mismatch"],
               known_deviation=["", "", "tf_valid_empty_output_raises", ""], bound_ratio=[0.1, None, None, 50.0])
    found = findings(df)
    assert found["case_id"].tolist() == ["d", "c"]  # mismatch before raised (OUTCOMES order)
    assert found.loc[found["case_id"] == "c", "known_deviation"].item() == "tf_valid_empty_output_raises"


def test_worst_orders_by_bound_ratio():
    df = _rows(case_id=["a", "b", "c"], adapter=["tf"] * 3, outcome=["pass", "mismatch", "pass"],
               bound_ratio=[0.5, 900.0, 2.0])
    assert worst(df, 2)["case_id"].tolist() == ["b", "c"]


def test_by_padding_counts_rows_findings_and_max_ratio():
    df = _rows(case_id=["a", "b", "c"], adapter=["tf"] * 3, outcome=["pass", "mismatch", "pass"],
               padding=["SAME", "SAME", "VALID"], bound_ratio=[0.5, 900.0, 2.0])
    table = by(df, "padding")
    assert table.loc["SAME", ("rows", "tf")] == 2 and table.loc["SAME", ("findings", "tf")] == 1
    assert table.loc["SAME", ("max_bound_ratio", "tf")] == 900.0
    assert table.loc["VALID", ("findings", "tf")] == 0
    assert by(df, "strides").index.name == "stride"


def test_timings_gflops_from_flops_and_median():
    # 2e6 FLOPs in 1 ms = 2 GFLOP/s; 4e6 in 1 ms = 4; spread = median / min.
    df = _rows(case_id=["a", "b"], adapter=["tf", "tf"], outcome=["pass", "pass"], flops=[2e6, 4e6],
               time_ms=[1.0, 1.0], time_median_ms=[1.0, 1.0], time_min_ms=[0.5, 1.0])
    table = timings(df)
    assert table.loc["tf", "gflops_min"] == pytest.approx(2.0)
    assert table.loc["tf", "gflops_max"] == pytest.approx(4.0)
    assert table.loc["tf", "spread"] == pytest.approx(1.5)


def test_capability_is_derived_from_unsupported_rows():
    df = _rows(case_id=["a", "b", "c", "d"], adapter=["numpy", "numpy", "torch", "torch"],
               outcome=["pass", "unsupported", "pass", "pass"],
               layout=["NHWC", "channels_last", "NHWC", "channels_last"],
               dtype=["float32"] * 4, error=["", "channels_last is a PyTorch memory format", "", ""])
    matrix = capability(df)
    assert matrix.loc["layout=channels_last", "numpy"] == "no"
    assert matrix.loc["layout=channels_last", "torch"] == "yes"
    # float32 is not blamed for the channels_last case numpy declined
    assert matrix.loc["dtype=float32", "numpy"] == "yes"


def test_deviations_carry_reason_and_upstream_from_the_data_file():
    df = _rows(case_id=["a"], adapter=["tf"], outcome=["raised"], known_deviation=["tf_valid_empty_output_raises"])
    table = deviations(df)
    assert table["deviation"].tolist() == ["tf_valid_empty_output_raises"]
    assert "negative" in table["reason"].item()


# --- rendered files ------------------------------------------------------------------------------


def test_write_reports_describes_the_finding_in_words(tmp_path):
    run = _copy("regressed", tmp_path)
    paths = write_reports(run)
    md, page = (p.read_text() for p in paths)
    words = "3x3 kernel, stride 2, SAME, 6x6 input, 2->2 channels, batch 1, float32: pads 0 before / 1 after"
    assert words in md and html.escape(words) in page
    assert "18 / 18 elements beyond tolerance" in page
    assert page.count('<figure class="plot"><svg ') >= 3  # ratio distribution, ratio vs K, timings
    assert "http://" not in page.replace("http://www.w3.org", "") and "<script" not in page  # self-contained


def test_report_command_rerenders_from_stored_rows(tmp_path, capsys):
    run = _copy("base", tmp_path)
    assert cli(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and "numpy" in out
    assert (run / "summary.md").read_text().startswith("# refconv run base")


def test_framework_strings_are_escaped(tmp_path):
    syn = _synthetic()
    run = syn.write_synthetic_run(tmp_path / "run", 400, seed=1)
    page = (write_reports(run)[1]).read_text()
    assert syn.HOSTILE not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert not re.search(r"<script", page)


def test_known_deviation_shows_reason_and_repro_link(tmp_path):
    syn = _synthetic()
    run = syn.write_synthetic_run(tmp_path / "run", 400, seed=1)
    page = (write_reports(run)[1]).read_text()
    assert "known deviation</b> <code>torch_empty_output_raises</code>" in page
    assert re.search(r'<a href="repro/[^"]+__torch\.py">script</a>', page)


def test_links_only_to_urls_and_paths_inside_the_run():
    assert link("repro/a.py", "s") == '<a href="repro/a.py">s</a>'
    assert link("https://github.com/x/y/issues/1", "u").startswith('<a href="https://')
    for bad in ("/etc/passwd", "../x.py", "javascript:alert(1)", ""):
        assert "<a" not in link(bad, "s")


def test_a_20000_row_run_renders_and_stays_small(tmp_path):
    # Its speed is measured by benchmarks/bench_report.py, not asserted here (a timed test flakes under load).
    run = _synthetic().write_synthetic_run(tmp_path / "big", 20_000)
    paths = write_reports(run)
    size = paths[1].stat().st_size
    assert size < 1_500_000, size
    assert "more in this group" in paths[1].read_text()  # findings capped, with the count of the rest


def test_a_run_killed_before_its_tables_reports_from_rows_jsonl(tmp_path):
    run = tmp_path / "killed"
    run.mkdir()
    rows = pd.read_csv(RUNS / "regressed" / "results.csv").to_json(orient="records", lines=True)
    (run / "rows.jsonl").write_text(rows + '{"case_id": "torn')  # a torn last line is skipped
    df = load_run(run)
    assert len(df) == 12 and (df["outcome"] == "mismatch").sum() == 1
    assert write_reports(run)[1].is_file()


# --- hardware: each engine's kernels, the CPU, and the status of every known deviation here -------------------

SPR = "x86-64-v4 avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx"
HW_TOML = """
[amx_bug]
adapter = "tf"
outcomes = ["mismatch"]
reason = "oneDNN's AMX kernels"
upstream = "u"
example = "n1-6x6x2-k3x3x2-s2x2-same-f32"
when = { onednn_isa = "avx512_core_amx", padding = "SAME" }
measured = "Xeon 8480+, onednn:avx512_core_amx"

[avx2_bug]
adapter = "tf"
outcomes = ["mismatch"]
reason = "oneDNN's AVX2 kernels"
upstream = "u"
example = "n1-6x6x2-k3x3x2-s2x2-same-f32"
when = { onednn_isa = "avx2" }
measured = "test fixture"

[valid_bug]
adapter = "tf"
outcomes = ["raised"]
reason = "VALID only"
upstream = "u"
example = "n1-6x6x2-k3x3x2-s2x2-valid-f32"
when = { padding = "VALID" }
measured = "test fixture"

[torch_bug]
adapter = "torch"
outcomes = ["raised"]
reason = "no torch here"
upstream = "u"
example = "n1-6x6x2-k3x3x2-s2x2-same-f32"
measured = "test fixture"
"""


def _hw_rows() -> pd.DataFrame:
    from refconv.rows import case_columns
    from refconv.spec import ConvSpec

    case = case_columns(ConvSpec.from_id(PLANTED))
    return normalize(pd.DataFrame([
        {**case, "adapter": "tf", "outcome": "pass", "isa": "onednn:avx512_core_amx", "cpu_features": SPR},
        {**case, "adapter": "tf:onednn=off", "outcome": "pass", "isa": "eigen", "cpu_features": SPR},
        {**case, "adapter": "numpy", "outcome": "raised", "isa": "", "cpu_features": SPR, "known_deviation": "x"},
    ]))


def test_each_known_deviation_gets_its_status_here():
    from refconv import deviations as D
    from refconv.report.summary import deviation_statuses

    table = deviation_statuses(_hw_rows(), D.parse(HW_TOML)).set_index("deviation")
    assert table.loc["amx_bug", "status"] == "fixed here?"  # its kernels and case ran, and passed
    assert table.loc["avx2_bug", "status"] == "not applicable here"  # no row ran oneDNN's AVX2 kernels
    assert table.loc["valid_bug", "status"] == "not exercised"  # no VALID case
    assert "torch_bug" not in table.index  # torch did not run: not listed
    assert table.loc["amx_bug", "hardware"] == "onednn_isa = avx512_core_amx"
    assert table.loc["amx_bug", "measured"] == "Xeon 8480+, onednn:avx512_core_amx"
    assert table.loc["valid_bug", "hardware"] == "any"


def test_rows_without_hardware_columns_never_make_an_entry_not_applicable():
    from refconv import deviations as D
    from refconv.report.summary import deviation_statuses

    old = _hw_rows().assign(isa="", cpu_features="")
    table = deviation_statuses(old, D.parse(HW_TOML)).set_index("deviation")
    assert table.loc["avx2_bug", "status"] != "not applicable here"


def test_the_reports_show_each_engines_kernels_the_cpu_and_deviation_statuses(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = _hw_rows().assign(cpu_model="Intel Xeon 8480+")
    rows.to_csv(run / "results.csv", index=False)
    md_path, html_path = write_reports(run)
    md, page = md_path.read_text(), html_path.read_text()
    assert f"CPU: Intel Xeon 8480+; features: {SPR}" in md and f"features: {SPR}" in page
    assert "| adapter | version | isa |" in md
    assert "| tf | | onednn:avx512_core_amx |" in md.replace("|  |", "| |")
    assert "| tf:onednn=off | | eigen |" in md.replace("|  |", "| |")
    assert "## Known deviations that applied, and those that did not here" in md
    assert "not applicable here" in md and "fixed here?" in page


def test_an_old_run_without_the_isa_column_has_no_empty_isa_column(tmp_path):
    md = write_reports(_copy("base", tmp_path))[0].read_text()
    assert "| adapter | version | pass |" in md and "features:" not in md.split("## Outcomes")[0]
