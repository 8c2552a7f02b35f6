"""The pipeline's steps, one module each, each mapping plain data to plain data; only ``edge_sql.pipeline`` knows
their order: database (open it locked down) → schema (read and render it) → question (clean it) → focus, prune,
hints (what of the schema the model sees) → prompt → grammar → generate → validate (with guard) → execute (in the
sandbox's worker process) → vote, then repair and merge as second rounds; explain reads a query back in words."""
