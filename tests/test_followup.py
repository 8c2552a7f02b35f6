"""A question is sent with the previous one as context only when it refers to it (steps/followup.py). The cases
are text: tests/fixtures/followups.cases, pairs of a previous and a next question and what the next one is."""

from __future__ import annotations

import pytest

from fixtures.followups import read_cases
from edge_sql.steps.followup import refers_back

CASES = read_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.next for case in CASES])
def test_each_case(case):
    found = refers_back(case.next)
    assert (found is not None) == (case.expect == "follow-up"), f"{case.next!r} after {case.previous!r}: {found}"


def test_the_cases_hold_both_kinds():
    kinds = [case.expect for case in CASES]
    assert kinds.count("follow-up") >= 20 and kinds.count("standalone") >= 20


@pytest.mark.parametrize("question, reason", [
    ("How many of them are from Canada?", '"them" points back'),
    ("What about Canada?", 'opens with "what about"'),
    ("Sort by order date.", '"sort by" works on the previous result'),
    ("In 2023?", 'opens with "in" and asks nothing of its own'),
    ("Cheaper than 10?", '"cheaper" compares without saying what'),
    ("Which products cost more than that?", '"that" points back'),
    ("Show the results sorted by date.", '"the results" points back'),
    ("How many?", "names nothing of its own"),
    ("Canada?", "a fragment"),
])
def test_a_follow_up_says_what_makes_it_one(question, reason):
    assert refers_back(question) == reason


@pytest.mark.parametrize("question", [
    "Which customers are from Canada?",  # names its own subject
    "List each customer and their country.",  # "their" belongs to "customer"
    "List the customers and the number of orders they placed.",  # "they" opens a clause about "orders"
    "Which customers have orders that were cancelled?",  # "that" relates, it does not point
    "Which products have the word 'them' in their name?",  # quoted text is a value, not words of the question
    "How many employees work in IT?",  # the department, not the pronoun
    "How many orders were placed this year?",  # "this year" is now, not the previous answer
    "In which country do most customers live?",  # a preposition first, but it asks its own question
    "Which customers live in the same city as another customer?",  # "same … as" compares within the question
])
def test_a_standalone_question_stays_alone(question):
    assert refers_back(question) is None
