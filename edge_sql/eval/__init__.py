"""``edgesql eval``: datasets (Spider, BIRD, JSONL), scoring (Spider's evaluator rules: metric, hardness), the run
through the real pipeline, and the report."""
