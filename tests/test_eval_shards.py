"""``edgesql eval --shard K/N`` on N machines, then ``--combine``: the merged report is the one a single run writes,
record for record, with the real llama.cpp backend (the tiny random GGUF: every question seeded alike wherever it
runs) and with a scripted model; what is not a complete set of shards of one run is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_sql.cli import app
from fixtures.tiny_gguf import write_tiny_gguf
from test_eval import spider_dataset

runner = CliRunner()
QUESTIONS = [(f"How many singers are older than {age}?", f"SELECT count(*) FROM singer WHERE age > {age}",
              "concert_singer") for age in range(20, 55, 5)]
#: What may differ between a run and its shards: time, memory, and where the run was started.
UNSTABLE = {"seconds", "costs", "wall_seconds", "peak_rss_mib", "latency", "tokens"}


def run_eval(*args) -> dict:
    result = runner.invoke(app, ["eval", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def stable(report: dict) -> dict:
    """The report less what time and memory change."""
    out = {k: v for k, v in report.items() if k not in UNSTABLE}
    out["records"] = [{k: v for k, v in r.items() if k not in UNSTABLE} for r in report["records"]]
    out["dataset"] = {k: v for k, v in report["dataset"].items() if k != "shard"}
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def test_four_shards_combined_equal_one_run_record_for_record(tiny, tmp_path):
    spider = spider_dataset(tmp_path / "spider", QUESTIONS)
    common = ["--data", spider, "--model", tiny, "-n", "1,3", "--threads", "1", "--no-grammar"]
    run_eval(*common, "--report", tmp_path / "whole.json")
    parts = []
    for k in (2, 4, 1, 3):  # any order: each machine runs its own
        parts.append(tmp_path / f"part{k}.json")
        run_eval(*common, "--shard", f"{k}/4", "--report", parts[-1])
    shard_sizes = [len(json.loads(p.read_text())["records"]) for p in sorted(parts)]
    assert shard_sizes == [2, 2, 2, 1]

    combined = run_eval("--combine", *parts, "--report", tmp_path / "all.json", "--predictions",
                        tmp_path / "pred.txt")
    whole = json.loads((tmp_path / "whole.json").read_text())
    merged = json.loads((tmp_path / "all.json").read_text())
    assert stable(merged) == stable(whole)
    assert merged["dataset"]["shard"] is None and whole["dataset"]["shard"] is None
    assert merged["wall_seconds"] == pytest.approx(sum(json.loads(p.read_text())["wall_seconds"] for p in parts))
    assert "EX on spider" in combined.stdout
    assert (tmp_path / "pred.1.txt").read_text().count("\n") == len(QUESTIONS)


def shards(tmp_path: Path, fake_model, n: int = 3) -> list[Path]:
    spider = spider_dataset(tmp_path / "spider", QUESTIONS)
    paths = []
    for k in range(1, n + 1):
        fake_model(*["SELECT count(*) FROM singer"] * 10)
        paths.append(tmp_path / f"part{k}.json")
        run_eval("--data", spider, "--model", "fake", "-n", "1", "--shard", f"{k}/{n}", "--report", paths[-1])
    return paths


def edited(path: Path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    out = path.with_name("edited-" + path.name)
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("case, message", [
    ("missing", "shard 2/3 missing"),
    ("twice", "shard 1/3 is given twice"),
    ("other model", "reports of different runs (their model differ)"),
    ("interrupted", "is an interrupted shard"),
    ("not a report", "is not an eval report"),
    ("unsharded", "is not a shard of the same --shard K/3 run"),
])
def test_what_is_not_the_shards_of_one_run_is_refused_in_one_line(tmp_path, fake_model, case, message):
    one, two, three = shards(tmp_path, fake_model)
    given = {
        "missing": lambda: [one, three],
        "twice": lambda: [one, one, two, three],
        "other model": lambda: [one, two, edited(three, lambda d: d.update(model="another"))],
        "interrupted": lambda: [one, two, edited(three, lambda d: d.update(interrupted=True))],
        "not a report": lambda: [one, two, tmp_path / "spider" / "tables.json"],
        "unsharded": lambda: [one, two, edited(three, lambda d: d["dataset"].update(shard=None))],
    }[case]()
    result = runner.invoke(app, ["eval", "--combine", *map(str, given)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--shard", "0/4"], "give K/N"),
    (["--shard", "5/4"], "give K/N"),
    (["--shard", "two"], "give K/N"),
])
def test_a_bad_shard_is_a_usage_error(tmp_path, fake_model, args, message):
    spider = spider_dataset(tmp_path / "spider", QUESTIONS)
    fake_model("SELECT 1")
    result = runner.invoke(app, ["eval", "--data", str(spider), "--model", "fake", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_combine_runs_no_questions(tmp_path):
    result = runner.invoke(app, ["eval", "--combine", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "runs no questions" in result.stderr
