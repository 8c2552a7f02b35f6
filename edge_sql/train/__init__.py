"""``edgesql train``: question/SQL pairs rendered as ``ask`` prompts (examples.py), LoRA fine-tuning with each schema
computed once for a batch of its questions (loop.py), the adapter written as a GGUF LoRA file llama.cpp applies at
run time (adapter.py), and the run that ties them together and scores a held-back slice (run.py). torch,
transformers and peft (the ``train`` extra) are imported only here."""
