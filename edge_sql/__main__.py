"""``python -m edge_sql``: the ``edgesql`` command."""

from edge_sql.cli import main

if __name__ == "__main__":
    main()
