"""Metamorphic relations in a run: relation rows, a planted batch bug caught oracle-free, resume."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from adapters.numpy_ref import NumpyAdapter
from refconv import metamorphic, relations_run, runner
from refconv.errors import UsageError
from refconv.rows import COLUMNS
from refconv.spec import ConvSpec
from refconv.store import RunStore

TWO_IMAGES = "n2-5x4x2-k3x3x3-s1x2-same-f32"  # batch 2: batch_split applies
GROUPED = "n3-6x6x4-k3x3x4-s2x2-p1_0x0_1-f64-d2x1-g2"  # every relation but one_by_one's needs applies


class SingleImageBug(NumpyAdapter):
    """Right on every batch of 2 or more; on a batch of one image it drops the bias (a planted bug).

    A run's case rows (batch 2) all pass against the reference; only the batch-split relation, which
    convolves each half of the batch on its own, sees it.
    """

    name = "single-image-bug"

    def prepare(self, x, w, b, spec):  # type: ignore[no-untyped-def]
        return super().prepare(x, w, None if spec.n == 1 else b, spec.replace(bias=spec.bias and spec.n > 1))


PLANTED = f"{__name__}:SingleImageBug"


def config(labels: list[str], case_ids: list[str], **kw: object) -> runner.RunConfig:
    options = {"repeats": 1, "case_timeout": 60.0, "isolation": False, **kw}
    return runner.RunConfig(run_id="rel-run", selection=",".join(case_ids), seed=0, adapters=labels,
                            cases=[[c, "cover-test"] for c in case_ids], **options)  # type: ignore[arg-type]


def phase(tmp_path: Path, labels: list[str], case_ids: list[str], names: list[str],
          budget: int = 4) -> tuple[RunStore, runner.RunConfig, list[dict]]:
    store = RunStore.create(tmp_path / "run")
    cfg = config(labels, case_ids)
    relations_run.write_plan(store.dir, names, budget)
    new, interrupted = relations_run.run_phase(store, cfg)
    assert not interrupted
    rows = [r for r in store.rows() if r.get("relation")]
    assert new == len(rows)
    return store, cfg, rows


def by_key(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["case_id"], r["adapter"], r["relation"]): r for r in rows}


def test_relation_column_is_part_of_the_row_columns():
    assert "relation" in COLUMNS


def test_planted_batch_bug_gives_a_broken_batch_split_row(tmp_path):
    _, _, rows = phase(tmp_path, ["numpy", PLANTED], [TWO_IMAGES], ["batch_split", "linearity_x"])
    got = by_key(rows)
    broken = got[(TWO_IMAGES, PLANTED, "batch_split")]
    assert broken["outcome"] == "broken" and broken["bound_ratio"] > broken["tolerance_c"]
    assert "elements beyond" in broken["error"]
    assert got[(TWO_IMAGES, "numpy", "batch_split")]["outcome"] == "pass"
    # linearity runs without bias: the planted bug cannot show there
    assert got[(TWO_IMAGES, PLANTED, "linearity_x")]["outcome"] == "pass"
    assert broken["n"] == 2 and broken["case_name"] == "cover-test" and broken["known_deviation"] == ""


def test_numpy_adapter_passes_every_relation_that_applies(tmp_path):
    spec = ConvSpec.from_id(GROUPED)
    names = list(metamorphic.RELATIONS)
    _, _, rows = phase(tmp_path, ["numpy"], [GROUPED, TWO_IMAGES], names)
    assert {r["outcome"] for r in rows} == {"pass"}, [r for r in rows if r["outcome"] != "pass"]
    mine = {r["relation"] for r in rows if r["case_id"] == GROUPED}
    assert mine == {n for n in names if relations_run.applicable(n, spec)}
    assert {"groups_split", "dilation_zero_insert", "stride_subsample", "pad_then_valid", "batch_split"} <= mine


def test_not_applicable_relations_give_no_row():
    one_image = ConvSpec.from_id("n1-5x5x1-k3x3x1-s1x1-valid-f32")
    assert not relations_run.applicable("batch_split", one_image)
    assert not relations_run.applicable("groups_split", one_image)
    assert not relations_run.applicable("pad_then_valid", one_image)
    assert relations_run.applicable("layout", one_image)


def test_special_value_cases_are_not_planned_and_planning_prints_no_float_warning():
    special = ConvSpec.from_id("n1-5x5x2-k3x3x2-s1x1-same-f16").replace(values="infmix_mid")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # Inf - 3 Inf in linearity_x's derived input printed one
        assert not any(relations_run.applicable(name, special) for name in metamorphic.RELATIONS)
        assert relations_run.applicable("linearity_x", special.replace(values="normal"))


def test_resume_does_not_recompute_stored_relation_rows(tmp_path, monkeypatch):
    store = RunStore.create(tmp_path / "run")
    cfg = config(["numpy"], [TWO_IMAGES, GROUPED])
    relations_run.write_plan(store.dir, ["batch_split", "layout"], 4)
    first, _ = relations_run.run_phase(store, cfg)
    assert first == 4  # 2 cases x 2 relations

    def boom(*args: object) -> None:
        raise AssertionError("a stored relation row was recomputed")

    monkeypatch.setattr(metamorphic, "check", boom)
    summary = runner.Runner(store, cfg, argv=["test"]).run()  # relation rows do not count as case rows done
    assert summary.new_rows == 2 and {r["relation"] for r in summary.rows} == {"", "batch_split", "layout"}
    before = store.rows_path.read_text()
    second, interrupted = relations_run.run_phase(store, cfg)
    assert (second, interrupted) == (0, False)
    assert store.rows_path.read_text() == before
    ordered = relations_run.ordered(store.rows(), cfg)
    assert [(r["case_id"], r["relation"]) for r in ordered] == [
        (TWO_IMAGES, ""), (TWO_IMAGES, "batch_split"), (TWO_IMAGES, "layout"), (GROUPED, ""),
        (GROUPED, "batch_split"), (GROUPED, "layout")]


def test_a_missing_relation_row_is_computed_on_resume(tmp_path):
    store, cfg, rows = phase(tmp_path, ["numpy"], [TWO_IMAGES], ["batch_split", "layout"])
    kept = [r for r in store.rows() if r.get("relation") != "layout"]  # as if killed before the last row
    store.rows_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    new, _ = relations_run.run_phase(store, cfg)
    assert new == 1 and {r["relation"] for r in store.rows()} == {"batch_split", "layout"}


def test_pick_cases_prefers_cover_cases_with_output_and_respects_the_budget():
    cover = [ConvSpec.from_id(TWO_IMAGES).replace(name="cover-degenerate")]
    empty = [ConvSpec.from_id("n2-2x2x2-k3x3x2-s1x1-valid-f32").replace(name="cover-breadth")]
    edge = [ConvSpec.from_id(GROUPED).replace(name="same_even_kernel")]
    picked = relations_run.pick_cases(edge + empty + cover, list(metamorphic.RELATIONS), 2, seed=0)
    assert [s.id for s in picked] == [TWO_IMAGES, GROUPED]  # the empty-output case is never picked
    assert relations_run.pick_cases(edge + cover, ["batch_split"], 1, seed=3) == cover


def test_relation_names_are_checked():
    assert relations_run.parse_names("all") == list(metamorphic.RELATIONS)
    assert relations_run.parse_names("none") == []
    assert relations_run.parse_names("layout, batch_split,layout") == ["layout", "batch_split"]
    with pytest.raises(UsageError, match="unknown relation batch_splt; available: linearity_x"):
        relations_run.parse_names("batch_splt")


def test_worker_verdicts_pickle_and_name_each_relation():
    verdicts = relations_run.check_in_worker(NumpyAdapter(), TWO_IMAGES, ["batch_split", "groups_split"])
    assert [v["relation"] for v in verdicts] == ["batch_split", "groups_split"]
    assert verdicts[0]["outcome"] == "pass" and verdicts[1]["outcome"] == "not_applicable"
    assert np.isfinite(verdicts[0]["bound_ratio"])


def test_cli_rejects_an_unknown_relation_before_writing_anything(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "refconv", "run", "--adapters", "numpy", "--cases", TWO_IMAGES,
                           "--relations", "nope", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown relation nope" in proc.stderr
    assert not out.exists()


def test_relations_run_in_the_adapters_worker_process(tmp_path):
    store = RunStore.create(tmp_path / "run")
    cfg = config(["numpy"], [TWO_IMAGES], isolation=True)
    relations_run.write_plan(store.dir, ["batch_split"], 1)
    new, _ = relations_run.run_phase(store, cfg)
    (row,) = [r for r in store.rows() if r.get("relation")]
    assert new == 1 and row["outcome"] == "pass" and row["adapter_version"]
