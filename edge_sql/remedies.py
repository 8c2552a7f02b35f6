"""The switches of the pipeline's remedies for a small model's predictable failures (issue 9). Kept free of heavy
imports: the CLI reads the defaults to write its help."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Remedies:
    """What the pipeline does beyond sample-and-vote to make a small model right more often; each is switchable and
    measured (README, "What makes a small model right more often").

    - ``constrain``: check every token as it is decoded (``steps/constrain``): a candidate can only go on
      writing a query whose tables, aliases and columns exist, each column on a table that has it, and can only
      end where the whole query passes validation;
    - ``grammar``: decode under a GBNF grammar built from the schema, so candidates can only name real tables and
      columns;
    - ``repair``: rounds of asking again with the failing SQL, its error and the valid names, when no candidate ran;
    - ``merge``: when no result has a majority, ask the model to settle between the two most-voted queries;
    - ``prune``: ``auto`` drops the tables and columns least relevant to the question only as far as the prompt needs
      to fit the model, ``always`` keeps only the most relevant ones, ``never`` shows the whole schema;
    - ``hints``: show, for text columns, the stored values closest to words of the question.
    """

    # The defaults are the best combination measured with the demo model on the Spider dev half (README's table):
    # the grammar and the hints; repair, merge and pruning beyond what the context needs cost time and gained nothing.
    grammar: bool = True
    constrain: bool = True
    repair: int = 0
    merge: bool = False
    prune: str = "auto"
    hints: bool = True


#: The remedies a model ``edgesql train`` wrote runs with where no flag or config file sets one (the folder it wrote,
#: or its adapter merged by ``edgesql convert``), whatever its base's preset says: what its held-back questions are
#: scored with, and what the shipped adapter measured best (Spider dev half: 50.7% vote@5 with the check and no
#: grammar, 41.4% with the grammar, whose bounds cut SQL it learned to write).
TRAINED = {"constrain": True, "grammar": False}

#: The most repair rounds a question may take.
MAX_REPAIR_ROUNDS = 3
PRUNE_MODES = ("auto", "always", "never")
