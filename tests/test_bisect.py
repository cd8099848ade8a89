"""Bisection over released versions: the search, the registry's version list, findings.json's present_since."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from refconv import bisect
from refconv.cli import main as cli
from refconv.errors import UsageError

RUNS = Path(__file__).parent / "data" / "runs"
VERSIONS = ["2.12.0", "2.12.1", "2.13.0", "2.13.1", "2.14.0", "2.14.1", "2.15.0", "2.15.0.post1", "2.15.1",
            "2.16.1", "2.16.2", "2.17.0", "2.17.1", "2.18.0", "2.18.1", "2.19.0", "2.19.1", "2.20.0", "2.21.0"]
PIP_OUTPUT = """tensorflow-cpu (2.21.0)
Available versions: 2.21.0, 2.20.0, 2.19.1, 2.15.0.post1, 2.15.1, 2.15.0, 2.12.0
  INSTALLED: 2.21.0
"""


def fake_probe(first_bad: str, unavailable: tuple[str, ...] = ()) -> tuple[list[str], bisect.Callable]:
    tried: list[str] = []

    def probe(version: str) -> bisect.Trial:
        tried.append(version)
        if version in unavailable:
            return bisect.Trial(version, bisect.UNAVAILABLE, error="no wheel")
        bad = bisect.version_key(version) >= bisect.version_key(first_bad)
        return bisect.Trial(version, "mismatch" if bad else "pass", 1e6 if bad else 0.5)

    return tried, probe


def test_pip_index_output_is_parsed_oldest_first_with_post_releases_in_place():
    assert bisect.parse_index_versions(PIP_OUTPUT) == ["2.12.0", "2.15.0", "2.15.0.post1", "2.15.1", "2.19.1",
                                                       "2.20.0", "2.21.0"]
    assert bisect.parse_index_versions("nothing here") == []


@pytest.mark.parametrize("first_bad", VERSIONS[1:])
def test_the_first_bad_version_is_found_in_logarithmic_steps(first_bad):
    tried, probe = fake_probe(first_bad)
    result = bisect.bisect("case", "tf", VERSIONS, probe)
    i = VERSIONS.index(first_bad)
    assert (result.first_changed, result.last_same) == (first_bad, VERSIONS[i - 1])
    assert result.present_since == f"{first_bad} (not in {VERSIONS[i - 1]})"
    assert len(tried) <= 2 + math.ceil(math.log2(len(VERSIONS)))
    assert [t.version for t in result.trials] == tried


def test_versions_that_do_not_install_are_skipped_and_named():
    tried, probe = fake_probe("2.16.1", unavailable=("2.15.1", "2.21.0"))
    result = bisect.bisect("case", "tf", VERSIONS, probe)
    assert (result.first_changed, result.last_same) == ("2.16.1", "2.15.0.post1")
    assert "2.21.0" in tried  # the bad end fell back to 2.20.0
    tried, probe = fake_probe("2.16.1", unavailable=("2.15.1",))
    result = bisect.bisect("case", "tf", ["2.15.0", "2.15.1", "2.16.1"], probe)
    assert result.present_since == "2.16.1 (not in 2.15.0)" and "cannot be installed): 2.15.1" in result.note


def test_the_same_outcome_at_both_ends_reports_no_boundary():
    _, probe = fake_probe("1.0")  # every version fails
    result = bisect.bisect("case", "tf", VERSIONS, probe)
    assert result.first_changed is None and "same outcome (mismatch)" in result.note
    assert result.present_since.startswith("2.12.0 or earlier")
    _, probe = fake_probe("9.9")  # every version passes
    assert bisect.bisect("case", "tf", VERSIONS, probe).present_since is None


def test_built_environments_are_preferred_near_the_middle():
    tried, probe = fake_probe("2.13.0")
    bisect.bisect("case", "tf", VERSIONS, probe, is_cheap=lambda v: v == "2.16.2")
    assert tried[2] == "2.16.2"  # not the exact middle (2.16.1), but built already
    tried, probe = fake_probe("2.13.0")
    bisect.bisect("case", "tf", VERSIONS, probe, is_cheap=lambda v: v == "2.20.0")
    assert tried[2] == "2.16.1"  # too far from the middle: the halving step wins


def test_window_checks_good_and_bad():
    assert bisect.window(VERSIONS, "2.15.1", "2.17.0") == ["2.15.1", "2.16.1", "2.16.2", "2.17.0"]
    with pytest.raises(UsageError, match="not a released version"):
        bisect.window(VERSIONS, "2.11.0", None)
    with pytest.raises(UsageError, match="must be older"):
        bisect.window(VERSIONS, "2.17.0", "2.15.1")


def test_bisect_fills_present_since_in_a_run_and_its_reports(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(RUNS / "base", run)
    case = "n1-6x6x2-k3x3x2-s2x2-same-f32"
    problem = {"id": "tf-mismatch-demo", "adapters": ["tf"], "outcome": "mismatch", "minimal_case": case,
               "cases": [case], "title": "a demo problem"}
    (run / "findings.json").write_text(json.dumps([problem]))
    monkeypatch.setattr(bisect, "released_versions", lambda engine: VERSIONS)
    monkeypatch.setattr(bisect, "probe_case", lambda engine, case_id, options="", **kw: fake_probe("2.16.1")[1])
    assert cli(["bisect", "tf", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert "2.16.1         mismatch" in out and "present since 2.16.1 (not in 2.15.1)" in out
    assert json.loads((run / "findings.json").read_text())[0]["present_since"] == "2.16.1 (not in 2.15.1)"
    assert "2.16.1 (not in 2.15.1)" in (run / "summary.md").read_text()
    upstream = next((run / "upstream").glob("*.md")).read_text()
    assert "Present since 2.16.1 (not in 2.15.1)" in upstream


def test_bisect_usage_errors_are_one_line(capsys):
    assert cli(["bisect", "tf"]) == 2
    assert cli(["bisect", "tf@2.19.1", "--case", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "exactly one of" in err[0] and "unpinned" in err[1]
