"""Two eval reports of the same questions compared question by question (`benchmarks/compare.py`): which questions
each model got right that the other did not, and the sign test that says whether so uneven a split is chance."""

from __future__ import annotations

import subprocess
import sys

from test_eval import RESPONSES, run_eval, spider_dataset

from conftest import ROOT
from edge_sql.eval.compare import compare, compare_files, sign_test

#: A second model, against RESPONSES: question 1 right at greedy but outvoted by a wrong answer, question 2 right at
#: greedy too (RESPONSES' greedy has the wrong order), question 5 still nothing valid.
BETTER_GREEDY = [
    "SELECT count(*) FROM singer", "SELECT 1", "SELECT 1",
    "SELECT name FROM singer WHERE country = 'France' ORDER BY age DESC",
    "SELECT name FROM singer WHERE country = 'France' ORDER BY age DESC", "SELECT 2",
    "SELECT colour FROM singer", "SELECT colour FROM singer", "SELECT colour FROM singer",
]


def reports(tmp_path, fake_model):
    spider = spider_dataset(tmp_path / "spider")
    paths = []
    for name, responses in (("first", RESPONSES), ("second", BETTER_GREEDY)):
        fake_model(*responses)
        paths.append(tmp_path / f"{name}.json")
        assert run_eval("--data", str(spider), "--model", "fake", "-n", "1,3", "--report", str(paths[-1])).exit_code == 0
    return paths


def test_each_answer_counts_the_questions_one_model_got_and_the_other_did_not(tmp_path, fake_model):
    comparisons, common = compare_files(*reports(tmp_path, fake_model))
    greedy, vote = comparisons
    assert common == 3  # the two skipped questions are in neither
    assert (greedy.label, greedy.both, greedy.only_first, greedy.only_second, greedy.neither) == ("greedy", 1, 0, 1, 1)
    assert (vote.label, vote.both, vote.only_first, vote.only_second, vote.neither) == ("vote@3", 1, 1, 0, 1)
    assert greedy.questions == vote.questions == 3


def report(*rows):
    """A report of greedy answers only: rows of (index, (question, right))."""
    return {"records": [{"index": i, "db_id": "d", "question": q, "gold": "SELECT 1",
                         "answers": [{"candidates": 1, "right": right}]} for i, (q, right) in rows]}


def test_questions_are_matched_by_what_they_ask_not_by_their_number():
    first = report((0, ("a", True)), (1, ("b", False)), (2, ("c", True)))
    renumbered = report((7, ("c", False)), (8, ("a", True)), (9, ("z", True)))
    (greedy,), common = compare(first, renumbered)
    assert common == 2 and (greedy.both, greedy.only_first, greedy.only_second) == (1, 1, 0)


def test_the_sign_test_is_one_for_an_even_split_and_small_for_a_lopsided_one():
    assert sign_test(0, 0) == sign_test(7, 7) == 1.0
    assert sign_test(0, 10) == sign_test(10, 0) < 0.002
    assert sign_test(3, 9) > 0.05 > sign_test(2, 12)


def test_the_script_prints_both_models_side_by_side(tmp_path, fake_model):
    first, second = reports(tmp_path, fake_model)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"), str(first), str(second)],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 questions scored in both")
    assert [line.split("|")[0].strip() for line in lines[2:]] == ["greedy", "vote@3"]


def test_a_question_asked_twice_is_matched_turn_by_turn():
    (greedy,), common = compare(report((0, ("a", True)), (1, ("a", False))), report((5, ("a", True)), (6, ("a", True))))
    assert common == 2 and (greedy.both, greedy.only_first, greedy.only_second) == (1, 0, 1)
