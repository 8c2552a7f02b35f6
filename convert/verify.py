"""Step 4: does the GGUF file compute what the merged transformers model computes?

A few fixed prompts (plain text, SQL, and a chat turn with its special tokens) are tokenized by the Hugging Face
tokenizer; both models read the same token ids and we compare their next-token distributions at every position:
top-1 agreement, and the Kullback-Leibler divergence KL(transformers || GGUF) in nats. llama.cpp's own
tokenization of the same texts is compared too: a wrong pre-tokenizer or lost special tokens show there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROMPTS = (
    "The capital of France is",
    "SELECT name, COUNT(*) FROM customers WHERE country = 'France' GROUP BY name ORDER BY 2 DESC LIMIT 10;",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
)
CHAT = "How many customers are there in the table customers(id, name, city)?"


@dataclass(frozen=True)
class Agreement:
    """How closely a GGUF file follows the transformers model, over every position of the fixed prompts."""

    positions: int
    top1: float  # share of positions where both pick the same most likely next token
    kl_mean: float  # mean KL(transformers || GGUF), nats
    kl_max: float
    tokenizer_agrees: bool  # llama.cpp tokenizes the prompts to the same ids as transformers

    def summary(self) -> str:
        return (f"top-1 {self.top1:.1%} of {self.positions} positions, KL mean {self.kl_mean:.2g} "
                f"max {self.kl_max:.2g} nats, tokenizer {'agrees' if self.tokenizer_agrees else 'DIFFERS'}")


def prompts(tokenizer) -> list[str]:
    """The fixed prompts, the last one rendered with the model's chat template when it has one."""
    texts = list(PROMPTS)
    if getattr(tokenizer, "chat_template", None):
        texts.append(tokenizer.apply_chat_template([{"role": "user", "content": CHAT}], tokenize=False,
                                                   add_generation_prompt=True))
    return texts


def reference_logits(model, tokenizer) -> list[tuple[list[int], object]]:
    """(token ids, logits per position) of the transformers model for each fixed prompt."""
    import torch

    out = []
    with torch.no_grad():
        for text in prompts(tokenizer):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            logits = model(torch.tensor([ids])).logits[0].double().numpy()
            out.append((ids, logits))
    return out


def compare(reference, tokenizer, path: Path, threads: int | None = None) -> Agreement:
    """Load the GGUF file at ``path`` with llama.cpp and compare it with ``reference`` (from
    :func:`reference_logits`)."""
    import numpy as np
    from llama_cpp import Llama

    longest = max(len(ids) for ids, _ in reference)
    llm = Llama(model_path=str(path), n_ctx=max(64, longest + 8), n_batch=max(64, longest + 8), logits_all=True,
                verbose=False, seed=0, n_threads=threads)
    try:
        same_tokens, top1, kls = True, [], []
        for (ids, expected), text in zip(reference, prompts(tokenizer)):
            same_tokens &= llm.tokenize(text.encode(), add_bos=False, special=True) == ids
            llm.reset()
            llm.eval(ids)
            got = np.asarray(llm.scores[:len(ids)], dtype=np.float64)
            top1.extend(got.argmax(-1) == expected.argmax(-1))
            p, q = log_softmax(expected), log_softmax(got)
            kls.extend((np.exp(p) * (p - q)).sum(-1))
    finally:
        llm.close()
    return Agreement(positions=len(top1), top1=float(np.mean(top1)), kl_mean=float(np.mean(kls)),
                     kl_max=float(np.max(kls)), tokenizer_agrees=bool(same_tokens))


def log_softmax(logits):
    import numpy as np

    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
