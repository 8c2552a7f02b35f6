"""GRPO's rollouts: a group of candidates for one training question, sampled by the product's own sampler — the
prompt ``ask`` builds, the batched llama.cpp decoder with the decoding-time check, the policy's LoRA adapter applied
at run time — then judged (validation, the guard, read-only execution in the sandbox worker, its limits) and scored
against the gold result as ``edgesql eval`` scores (:mod:`edge_sql.train.reward`).

The policy the sampler runs is a GGUF LoRA file the trainer writes; :meth:`Sampler.refresh` loads a newer one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_sql.errors import EdgeSQLError, QueryFailed
from edge_sql.eval.metric import prediction_line
from edge_sql.eval.scoring import is_right, run_gold
from edge_sql.pipeline import Limits, Setup, budget_for, fit_prompt
from edge_sql.protocols import get_protocol
from edge_sql.remedies import TRAINED, Remedies
from edge_sql.steps.generate import Sampling, candidate_of, stops_for
from edge_sql.steps.judge import judge
from edge_sql.steps.question import clean_question
from edge_sql.train.reward import Reward, Weights, reward_of

#: What the rollouts are prompted and checked with: what ``ask`` does with edgesql's own model (its preset's
#: remedies: the decoding-time check, value hints, no grammar).
ROLLOUT_REMEDIES = Remedies(**TRAINED)


@dataclass(frozen=True)
class Group:
    """One question's candidates: the prompt (and its schema head, shared by every question on that schema), what
    each candidate wrote (its end marker included when it chose to end), and their rewards."""

    index: int
    prefix: str
    prompt: str
    completions: tuple[str, ...]
    rewards: tuple[Reward, ...]
    tokens: int  # generated

    @property
    def accuracy(self) -> float:
        return sum(r.right for r in self.rewards) / max(1, len(self.rewards))


class Sampler:
    """Samples groups with a llama.cpp model: ``base`` (a GGUF file) with the LoRA adapter ``adapter``."""

    def __init__(self, base: Path, preset, adapter: Path, *, threads: int, scratch: Path, open_db,
                 weights: Weights = Weights(), remedies: Remedies = ROLLOUT_REMEDIES):
        self.base, self.preset, self.threads, self.scratch = base, preset, threads, scratch
        self.open_db, self.weights, self.remedies = open_db, weights, remedies
        self.model = None
        self.refresh(adapter)

    def refresh(self, adapter: Path) -> None:
        """Sample with the adapter now in ``adapter`` from here on."""
        from edge_sql.backends.llama import LlamaModel

        self.model = None  # the old context is freed before the new one is made
        shutil.rmtree(self.scratch, ignore_errors=True)  # prefix states of the old adapter are of no use now
        self.model = LlamaModel(self.base, preset=self.preset, threads=self.threads, adapter=adapter,
                                cache_dir=self.scratch)

    def roll(self, example, size: int, temperature: float, seed: int) -> Group | None:
        """``size`` candidates for ``example`` at ``temperature``, judged and rewarded; None when the question
        cannot be asked (its database is missing, its gold query fails, its prompt does not fit)."""
        try:
            db = self.open_db(example.db_path)
            gold = run_gold(example, (example.db_path,), "spider", self.open_db)
            question = clean_question(example.question)
            setup = Setup(db, self.model, Sampling(candidates=size, temperature=temperature), Limits(), self.remedies)
            budget = budget_for(self.model, question)
            view = fit_prompt(question, setup, budget)
        except (EdgeSQLError, QueryFailed):
            return None
        prompt = view.prompt
        completions = self.model.sample(prompt.text, [temperature] * size, seed=seed, max_tokens=budget,
                                        stop=stops_for(prompt),
                                        cache_prefix=prompt.cache_prefix or None, check=view.check)
        candidates = [candidate_of(prompt, c) for c in completions]
        entries = judge(candidates, db, setup.limits)
        gold_rows = gold.results[0][1]
        end = get_protocol(self.preset.protocol).stop[0]
        texts, rewards = [], []
        for completion, entry in zip(completions, entries):
            right = bool(entry.verdict.ok and entry.result is not None
                         and is_right(prediction_line(entry.verdict.sql), gold, "spider", self.open_db)[0])
            rewards.append(reward_of(entry, example.gold, gold_rows, right, self.weights))
            ended = completion.tokens < budget  # it chose to end (or a stop string ended it), not cut at the budget
            texts.append(trained_text(completion.text) + (end if ended else ""))
        return Group(example.index, prompt.cache_prefix, prompt.text, tuple(texts), tuple(rewards),
                     sum(c.tokens for c in completions))


def trained_text(text: str) -> str:
    """What a candidate wrote, as the trainer scores it: trailing blanks dropped (a blank line is a stop string that
    the decoder does not return), the SQL itself untouched.

    >>> trained_text(" name FROM singer \\n")
    ' name FROM singer'
    """
    return text.rstrip()

