"""The report leads with distinct problems, each once, with links to its repro and upstream report; rows fold below."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from refconv.report import load_run, problems, write_reports
from refconv.rows import case_columns
from refconv.spec import ConvSpec

WRONG = "wrong_adapter:OddPadBeforeConv"
ODD_SAME = ["n1-6x6x2-k3x3x2-s2x2-same-f32", "n1-8x8x2-k3x3x2-s2x2-same-f32", "n1-10x10x2-k3x3x2-s2x2-same-f32"]
EMPTY = "n1-2x3x2-k7x7x3-s1x1-valid-f32"
HOSTILE = "<script>alert('x')</script> ``` | [a](javascript:x)"


def _row(case_id: str, adapter: str, outcome: str, **extra: object) -> dict:
    return {"run_id": "t", **case_columns(ConvSpec.from_id(case_id)), "adapter": adapter, "outcome": outcome,
            "known_deviation": "", "error": "", "repro": "", **extra}


def _run(tmp_path: Path) -> Path:
    """A run of 4 failing rows: three of one planted bug on odd SAME cases, one known deviation."""
    rows = [_row(c, "numpy", "pass", bound_ratio=0.5, max_abs_err=0.0) for c in [*ODD_SAME, EMPTY]]
    rows += [_row(c, WRONG, "mismatch", bound_ratio=1e6 * (i + 1), max_abs_err=3.0, mismatched=5, n_elements=18)
             for i, c in enumerate(ODD_SAME)]
    rows.append(_row(EMPTY, "tf", "raised", known_deviation="tf_valid_empty_output_raises", error="negative size"))
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(rows).to_csv(run / "results.csv", index=False)
    return run


def test_problems_lead_each_once_with_engines_links_and_rows_folded_below(tmp_path):
    run = _run(tmp_path)
    md_path, html_path = write_reports(run)
    md, page = md_path.read_text(), html_path.read_text()
    assert "**2 problem(s) in 4 failing row(s)** (1 new, 1 explained by known deviations)" in md
    assert "2 problem(s) in 4 failing row(s)" in page
    # Problems first, rows after: in Markdown under a later heading, in HTML folded in <details>.
    assert md.index("### 1. ") < md.index("## Per-row detail")
    assert page.index('class="problem"') < page.index('<details id="rows-detail">')
    assert page.count('class="problem"') == 2
    # The planted bug is one problem, NEW, its smallest case as the minimal case, every engine side by side.
    new = page[page.index('class="problem"'):page.index('class="problem"', page.index('class="problem"') + 1)]
    assert "NEW" in new and ODD_SAME[0] in new and "3x3 kernel, stride 2, SAME, 6x6 input" in new
    assert "3 failing row(s) over 3 case(s)" in new
    assert re.search(r"<td>numpy</td><td>pass</td>", new)
    assert re.search(r"<td[^>]*>wrong_adapter:OddPadBeforeConv</td><td>mismatch</td>", new)
    # Each problem links its upstream report, which exists in upstream/.
    links = re.findall(r'<a href="(upstream/[^"]+\.md)">upstream report</a>', page)
    assert len(links) == 2 and all((run / link).is_file() for link in links)
    assert "tf_valid_empty_output_raises" in "".join(links)
    assert "[upstream report](upstream/" in md


def test_hunted_problems_come_from_findings_json_with_their_characterization(tmp_path):
    run = _run(tmp_path)
    hunted = {"id": "odd-same-pad-first", "adapters": [WRONG], "outcome": "mismatch", "minimal_case": ODD_SAME[0],
              "cases": ODD_SAME, "conditions": {"padding": "SAME", "pad_bottom": {"min": 1}}, "precision": 0.95,
              "recall": 0.9, "probes": 41, "known_deviation": None, "engines": {WRONG: "mismatch", "numpy": "pass",
                                                                              "tf": "pass"},
              "repro": None, "upstream_report": None, "title": HOSTILE, "present_since": None, "rows": 3}
    (run / "findings.json").write_text(json.dumps([hunted]))
    md_path, html_path = write_reports(run)
    md, page = md_path.read_text(), html_path.read_text()
    assert "1 problem(s) in 4 failing row(s)" in page  # from findings.json, not regrouped
    assert "precision 0.95, recall 0.90, 41 probes" in page and "padding = SAME and pad_bottom &gt;= 1" in page
    assert (run / "upstream" / "odd-same-pad-first.md").is_file()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    heading = next(line for line in md.splitlines() if line.startswith("### 1. "))
    assert "<script>" not in heading and "\\`\\`\\`" in heading and "\\|" in heading


def test_an_unreadable_findings_json_falls_back_to_the_rows_with_a_note(tmp_path):
    run = _run(tmp_path)
    (run / "findings.json").write_text('{"not": "a list"}')
    df = load_run(run)
    found, note = problems.load(run, df)
    assert "findings.json could not be read" in note and len(found) == 2
    assert "findings.json could not be read" in problems.html_section(found, df, note)


def test_each_problem_names_the_kernels_its_rows_ran(tmp_path):
    run = _run(tmp_path)
    rows = pd.read_csv(run / "results.csv")
    rows["isa"] = rows["adapter"].map({WRONG: "onednn:avx2", "numpy": "openblas:SapphireRapids"}).fillna("eigen")
    rows.to_csv(run / "results.csv", index=False)
    md_path, html_path = write_reports(run)
    md, page = md_path.read_text(), html_path.read_text()
    assert "- kernels: `onednn:avx2 (3 rows)`" in md and "- kernels: `eigen (1 row)`" in md
    assert "| `numpy` | pass | `openblas:SapphireRapids` |" in md  # every engine's kernels on the minimal case
    assert "<p><b>kernels</b>: onednn:avx2 (3 rows)</p>" in page
    assert problems.kernels({"isa": ["onednn:avx512_core_amx"]}, load_run(run)) == "onednn:avx512_core_amx"
