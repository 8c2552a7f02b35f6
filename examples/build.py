"""Build the bundled example database: a small online shop.

The shop sells 25 products in 5 categories (Electronics, Books, Home & Kitchen,
Sports & Outdoors, Clothing) to 40 customers in 8 countries (United States,
Canada, United Kingdom, Germany, France, Spain, Italy, Australia).  It has four
tables:

* ``customers``   -- who signed up, from where and when (2022-2024); a few have
  no e-mail address on file (``email`` is NULL).
* ``products``    -- the catalogue, with a list ``price`` in dollars.
* ``orders``      -- 150 orders placed between 2023-01-01 and 2025-12-31, each
  ``pending``, ``shipped``, ``delivered`` or ``cancelled`` (older orders are
  delivered or cancelled, the last few months' still pending or shipped);
  ``shipped_date`` is NULL for orders that have not shipped (pending or
  cancelled).  Some customers order often, a few never have.
* ``order_items`` -- the lines of each order: product, ``quantity`` and the
  ``unit_price`` actually paid (the list price, or 10% off for a few lines).

Everything comes from one definition in this file -- ``DDL`` (portable CREATE
TABLE statements both engines accept) and the rows from :func:`generate_rows`,
drawn from ``random.Random(SEED)`` with fixed date bounds -- and is written to
both ``shop.sqlite`` (stdlib sqlite3) and ``shop.duckdb`` (duckdb), so the two
files hold identical data.  Dates are ISO ``YYYY-MM-DD`` text in SQLite (the
columns are declared DATE) and real DATE values in DuckDB; prices are DOUBLE
rounded to cents, which both engines return as the same Python float.

Run from the repository root::

    python examples/build.py            # writes examples/shop.sqlite and examples/shop.duckdb
    python examples/build.py OUT_DIR    # writes them into OUT_DIR instead
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
import sys
from pathlib import Path

import duckdb

SEED = 20240607

SQLITE_NAME = "shop.sqlite"
DUCKDB_NAME = "shop.duckdb"
DUCKDB_BLOCK_SIZE = 16_384

#: Table names in dependency order (parents before children).
TABLES = ("customers", "products", "orders", "order_items")

#: The schema, as CREATE TABLE statements that SQLite and DuckDB both accept.
DDL = [
    """CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT,
    city TEXT NOT NULL,
    country TEXT NOT NULL,
    signup_date DATE NOT NULL
)""",
    """CREATE TABLE products (
    product_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price DOUBLE NOT NULL
)""",
    """CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    order_date DATE NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'shipped', 'delivered', 'cancelled')),
    shipped_date DATE,
    FOREIGN KEY (customer_id) REFERENCES customers (customer_id)
)""",
    """CREATE TABLE order_items (
    order_item_id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price DOUBLE NOT NULL,
    FOREIGN KEY (order_id) REFERENCES orders (order_id),
    FOREIGN KEY (product_id) REFERENCES products (product_id)
)""",
]

# --------------------------------------------------------------------------
# Source material for the rows
# --------------------------------------------------------------------------

#: country -> (cities, first names, last names)
COUNTRIES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "United States": (
        ["New York", "Chicago", "Austin", "Seattle"],
        ["James", "Emily", "Michael", "Olivia", "Daniel", "Sarah"],
        ["Smith", "Johnson", "Brown", "Miller", "Davis", "Wilson"],
    ),
    "Canada": (
        ["Toronto", "Vancouver", "Montreal"],
        ["Liam", "Chloe", "Ethan", "Ava", "Noah"],
        ["Tremblay", "Roy", "Campbell", "MacDonald", "Wong"],
    ),
    "United Kingdom": (
        ["London", "Manchester", "Edinburgh"],
        ["Oliver", "Amelia", "Harry", "Isla", "George"],
        ["Taylor", "Evans", "Thomas", "Roberts", "Walker"],
    ),
    "Germany": (
        ["Berlin", "Munich", "Hamburg"],
        ["Lukas", "Anna", "Felix", "Lena", "Jonas"],
        ["Mueller", "Schmidt", "Fischer", "Weber", "Becker"],
    ),
    "France": (
        ["Paris", "Lyon", "Marseille"],
        ["Louis", "Camille", "Hugo", "Manon", "Jules"],
        ["Martin", "Bernard", "Dubois", "Laurent", "Moreau"],
    ),
    "Spain": (
        ["Madrid", "Barcelona", "Valencia"],
        ["Pablo", "Lucia", "Javier", "Carmen", "Diego"],
        ["Garcia", "Fernandez", "Lopez", "Martinez", "Sanchez"],
    ),
    "Italy": (
        ["Rome", "Milan", "Naples"],
        ["Marco", "Giulia", "Luca", "Sofia", "Matteo"],
        ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi"],
    ),
    "Australia": (
        ["Sydney", "Melbourne", "Brisbane"],
        ["Jack", "Charlotte", "William", "Mia", "Thomas"],
        ["Williams", "Jones", "Kelly", "Ryan", "Nguyen"],
    ),
}

#: How many customers come from each country (sums to 40).
CUSTOMERS_PER_COUNTRY = {
    "United States": 9,
    "United Kingdom": 6,
    "Germany": 5,
    "Canada": 5,
    "France": 4,
    "Australia": 4,
    "Spain": 4,
    "Italy": 3,
}

EMAIL_DOMAINS = ["example.com", "example.org", "example.net"]

#: (name, category, list price) -- every price is distinct.
PRODUCTS = [
    ("Wireless Mouse", "Electronics", 24.99),
    ("Mechanical Keyboard", "Electronics", 89.99),
    ("Noise-Cancelling Headphones", "Electronics", 199.99),
    ("27-inch 4K Monitor", "Electronics", 329.0),
    ("USB-C Charger 65W", "Electronics", 39.5),
    ("Learning SQL", "Books", 44.95),
    ("The Art of Databases", "Books", 52.0),
    ("Python for Data Analysis", "Books", 49.99),
    ("Mystery at Moor House", "Books", 14.99),
    ("A Short History of Maps", "Books", 18.75),
    ("Stainless Steel Kettle", "Home & Kitchen", 34.9),
    ("Cast Iron Skillet", "Home & Kitchen", 42.0),
    ("Espresso Machine", "Home & Kitchen", 249.0),
    ("Bamboo Cutting Board", "Home & Kitchen", 19.99),
    ("Ceramic Dinner Plates (Set of 4)", "Home & Kitchen", 29.95),
    ("Yoga Mat", "Sports & Outdoors", 27.5),
    ("Trail Running Shoes", "Sports & Outdoors", 119.0),
    ("Insulated Water Bottle", "Sports & Outdoors", 22.49),
    ("Two-Person Tent", "Sports & Outdoors", 179.0),
    ("Adjustable Dumbbells", "Sports & Outdoors", 149.99),
    ("Cotton T-Shirt", "Clothing", 15.99),
    ("Denim Jacket", "Clothing", 79.0),
    ("Wool Beanie", "Clothing", 17.5),
    ("Rain Jacket", "Clothing", 99.95),
    ("Leather Belt", "Clothing", 32.0),
]

N_ORDERS = 150
SIGNUP_FIRST = dt.date(2022, 1, 1)
SIGNUP_LAST = dt.date(2024, 12, 31)
ORDER_FIRST = dt.date(2023, 1, 1)
ORDER_LAST = dt.date(2025, 12, 31)


def _random_date(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=rng.randint(0, (last - first).days))


def generate_rows() -> dict[str, list[tuple]]:
    """Return every table's rows, generated deterministically from ``SEED``.

    Dates are ISO ``YYYY-MM-DD`` strings; prices are floats rounded to cents.
    """
    rng = random.Random(SEED)

    # Customers: names drawn from each country's pool, no duplicate full names.
    people = []
    for country, count in CUSTOMERS_PER_COUNTRY.items():
        cities, firsts, lasts = COUNTRIES[country]
        names = rng.sample([(f, l) for f in firsts for l in lasts], count)
        for first, last in names:
            people.append((first, last, rng.choice(cities), country))
    rng.shuffle(people)
    signups = sorted(_random_date(rng, SIGNUP_FIRST, SIGNUP_LAST) for _ in people)
    customers = []
    for customer_id, ((first, last, city, country), signup) in enumerate(
        zip(people, signups), start=1
    ):
        if rng.random() < 0.15:
            email = None
        else:
            email = f"{first.lower()}.{last.lower()}@{rng.choice(EMAIL_DOMAINS)}"
        customers.append(
            (customer_id, first, last, email, city, country, signup.isoformat())
        )

    products = [
        (product_id, name, category, round(price, 2))
        for product_id, (name, category, price) in enumerate(PRODUCTS, start=1)
    ]

    # Orders: a few customers buy often, some never; order ids follow order_date.
    activity = [rng.choice([0, 1, 1, 2, 3, 5]) for _ in customers]
    drafts = []
    for _ in range(N_ORDERS):
        (customer,) = rng.choices(customers, weights=activity)
        signup = dt.date.fromisoformat(customer[6])
        order_date = _random_date(rng, max(signup, ORDER_FIRST), ORDER_LAST)
        drafts.append((order_date, customer[0]))
    drafts.sort()
    orders = []
    for order_id, (order_date, customer_id) in enumerate(drafts, start=1):
        age = (ORDER_LAST - order_date).days  # days before the data ends
        if age < 45:  # recent: mostly not delivered yet
            statuses, weights = ["pending", "shipped", "cancelled"], [50, 40, 10]
        elif age < 120:
            statuses, weights = ["shipped", "delivered", "cancelled"], [40, 50, 10]
        else:
            statuses, weights = ["delivered", "cancelled"], [88, 12]
        (status,) = rng.choices(statuses, weights=weights)
        if status in ("shipped", "delivered"):
            shipped = (order_date + dt.timedelta(days=rng.randint(1, 5))).isoformat()
        else:
            shipped = None
        orders.append((order_id, customer_id, order_date.isoformat(), status, shipped))

    # Order items: 1-4 distinct products per order, mostly at list price.
    order_items = []
    for order in orders:
        n_lines = rng.choices([1, 2, 3, 4], weights=[25, 35, 25, 15])[0]
        for product in rng.sample(products, n_lines):
            quantity = rng.choices([1, 2, 3, 4], weights=[60, 25, 10, 5])[0]
            price = product[3]
            if rng.random() < 0.1:
                price = round(price * 0.9, 2)
            order_items.append(
                (len(order_items) + 1, order[0], product[0], quantity, price)
            )

    return {
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_items": order_items,
    }


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------


def _insert_sql(table: str, width: int) -> str:
    return f"INSERT INTO {table} VALUES ({', '.join('?' * width)})"


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _write_sqlite(path: Path, rows: dict[str, list[tuple]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    for stale in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        _remove(stale)
    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA foreign_keys = ON")  # the load itself checks the FKs
        with conn:
            for statement in DDL:
                conn.execute(statement)
            for table in TABLES:
                conn.executemany(_insert_sql(table, len(rows[table][0])), rows[table])
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise RuntimeError(f"foreign key violations in SQLite: {problems}")
        conn.execute("VACUUM")
    finally:
        conn.close()
    for stale in (Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        _remove(stale)
    os.replace(tmp, path)


def _write_duckdb(path: Path, rows: dict[str, list[tuple]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp_wal = Path(f"{tmp}.wal")
    _remove(tmp)
    _remove(tmp_wal)
    conn = duckdb.connect()
    try:
        # 16 KiB blocks instead of the default 256 KiB: every table, primary
        # key and foreign key index takes at least one block, so this keeps
        # the file at a couple of hundred KB instead of about 3 MB.  The block
        # size is recorded in the file; readers need no option to open it.
        quoted = str(tmp).replace("'", "''")
        conn.execute(f"ATTACH '{quoted}' AS shop (BLOCK_SIZE {DUCKDB_BLOCK_SIZE})")
        conn.execute("USE shop")
        for statement in DDL:
            conn.execute(statement)
        for table in TABLES:
            conn.executemany(_insert_sql(table, len(rows[table][0])), rows[table])
        conn.execute("CHECKPOINT shop")
        conn.execute("USE memory")
        conn.execute("DETACH shop")
    finally:
        conn.close()
    if tmp_wal.exists():
        raise RuntimeError(f"DuckDB left a write-ahead log behind: {tmp_wal}")
    # A stale WAL next to the target would be replayed into the new file.
    _remove(Path(f"{path}.wal"))
    os.replace(tmp, path)


def build(directory: Path) -> tuple[Path, Path]:
    """Write ``shop.sqlite`` and ``shop.duckdb`` into *directory*.

    Existing files are replaced.  Returns ``(sqlite_path, duckdb_path)``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = generate_rows()
    sqlite_path = directory / SQLITE_NAME
    duckdb_path = directory / DUCKDB_NAME
    _write_sqlite(sqlite_path, rows)
    _write_duckdb(duckdb_path, rows)
    return sqlite_path, duckdb_path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: python examples/build.py [OUT_DIR]", file=sys.stderr)
        return 2
    directory = Path(args[0]) if args else Path(__file__).resolve().parent
    for path in build(directory):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
