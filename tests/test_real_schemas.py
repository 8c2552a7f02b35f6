"""Real schemas: dates stored as text or as dates, views, and names with spaces — what the model is shown, what
pruning keeps, and that what the model writes with them validates, passes the check and the grammar, and runs.

The fixture is a small store on both engines: ``Orders`` with a ``DATE`` column, an ISO timestamp (text on SQLite,
``TIMESTAMP`` on DuckDB), a date written as ``'Dec 19, 2020'`` and unix seconds; ``"Order Details"`` with a column
``"Unit Price"``; and a view ``"Sales Totals"``.
"""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from conftest import ENGINES
from edge_sql.cli import app
from edge_sql.pipeline import Setup, deliberate
from edge_sql.steps.constrain import Check
from edge_sql.steps.database import open_database
from edge_sql.steps.execute import execute
from edge_sql.steps.focus import fit_note, schema_ladder
from edge_sql.steps.generate import Sampling
from edge_sql.steps.grammar import schema_grammar
from edge_sql.steps.hints import render_hints, value_hints
from edge_sql.steps.prune import prune_schema
from edge_sql.steps.repair import valid_names
from edge_sql.steps.schema import render_schema
from edge_sql.steps.validate import validate

runner = CliRunner()

TABLES = {
    "sqlite": [
        "CREATE TABLE Customers (CustomerID INTEGER PRIMARY KEY, CompanyName TEXT, City TEXT)",
        "CREATE TABLE Orders (OrderID INTEGER PRIMARY KEY, CustomerID INTEGER REFERENCES Customers(CustomerID), "
        "OrderDate DATE, ShippedDate TEXT, Created TEXT, Logged DATE, Epoch INTEGER)",
        'CREATE TABLE "Order Details" (OrderID INTEGER REFERENCES Orders(OrderID), ProductID INTEGER, '
        '"Unit Price" REAL, Quantity INTEGER, PRIMARY KEY (OrderID, ProductID))',
    ],
    "duckdb": [
        "CREATE TABLE Customers (CustomerID INTEGER PRIMARY KEY, CompanyName VARCHAR, City VARCHAR)",
        "CREATE TABLE Orders (OrderID INTEGER PRIMARY KEY, CustomerID INTEGER REFERENCES Customers(CustomerID), "
        "OrderDate DATE, ShippedDate TIMESTAMP, Created VARCHAR, Logged VARCHAR, Epoch BIGINT)",
        'CREATE TABLE "Order Details" (OrderID INTEGER REFERENCES Orders(OrderID), ProductID INTEGER, '
        '"Unit Price" DOUBLE, Quantity INTEGER, PRIMARY KEY (OrderID, ProductID))',
    ],
}
VIEW = ('CREATE VIEW "Sales Totals" AS SELECT o.OrderID, o.OrderDate, SUM(d."Unit Price" * d.Quantity) AS Total '
        'FROM Orders o JOIN "Order Details" d ON d.OrderID = o.OrderID GROUP BY o.OrderID, o.OrderDate')
ROWS = {
    "Customers": [(1, "Alfreds", "Berlin"), (2, "Bon app", "Marseille")],
    "Orders": [(1, 1, "2017-03-04", "2017-03-09 10:00:00", "Dec 19, 2020", "2017-03-04", 1500000000),
               (2, 2, "2023-01-05", "2023-01-07 08:30:00", "Jan 2, 2021", "2023-01-05", 1600000000)],
    '"Order Details"': [(1, 10, 2.5, 4), (2, 11, 3.0, 1)],
}


def build(path, engine: str):
    if engine == "sqlite":
        connection = sqlite3.connect(path)
    else:
        import duckdb

        connection = duckdb.connect(str(path))
    for statement in TABLES[engine] + [VIEW]:
        connection.execute(statement)
    for table, rows in ROWS.items():
        marks = ", ".join("?" * len(rows[0]))
        connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    connection.commit()
    connection.close()
    return path


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
    return build(tmp_path / f"store.{request.param}", request.param)


def rendered(store) -> str:
    with open_database(store) as db:
        return render_schema(db.schema, "ddl")


# -- dates -------------------------------------------------------------------------------------------------------------

def test_the_model_is_shown_how_each_date_is_stored_where_the_type_does_not_say(store):
    text = rendered(store)
    assert "Epoch INTEGER, -- unix seconds" in text or "Epoch BIGINT, -- unix seconds" in text
    assert "Created TEXT, -- e.g. 'Dec 19, 2020', 'Jan 2, 2021'" in text or \
        "Created VARCHAR, -- e.g. 'Dec 19, 2020'" in text  # free text: its samples show how it is written
    if store.suffix == ".sqlite":  # SQLite stores dates as text: its layout, once for the date columns, else a note
        assert "ShippedDate TEXT, -- stored as 'YYYY-MM-DD HH:MM:SS'" in text
        assert "OrderDate DATE,\n" in text and "Logged DATE,\n" in text
        assert text.endswith("-- dates: text 'YYYY-MM-DD' unless noted; strftime('%Y', col) = '2017', date(col), "
                             "julianday(a) - julianday(b)")
    else:  # DuckDB's DATE and TIMESTAMP say it themselves; a VARCHAR of dates is noted
        assert "OrderDate DATE,\n" in text and "ShippedDate TIMESTAMP,\n" in text
        assert "Logged VARCHAR, -- stored as 'YYYY-MM-DD'" in text
        assert text.endswith("-- dates: year(col) = 2017, date_trunc('month', col), date_diff('day', a, b)")


def test_a_date_column_of_free_text_is_shown_as_text(tmp_path):
    path = tmp_path / "free.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, happened DATE, year INTEGER)")
        connection.executemany("INSERT INTO events VALUES (?, ?, ?)",
                               [(1, "Dec 19, 2020", 2020), (2, "Jan 2, 2021", 2021)])
    text = rendered(path)
    assert "happened DATE, -- text like 'Dec 19, 2020'" in text
    assert "year INTEGER\n" in text  # its name says it is a year
    assert "-- dates:" not in text  # the engine's date functions cannot read any of it


def test_a_schema_without_dates_gets_no_dates_line(shop):
    with open_database(shop) as db:
        plain = type(db.schema)(db.schema.engine, tuple(t for t in db.schema.tables if t.name == "products"))
        assert "-- dates" not in render_schema(plain, "ddl")


def test_the_date_functions_shown_run_on_their_engine(store):
    with open_database(store) as db:
        if db.engine == "sqlite":
            sql = "SELECT count(*) FROM Orders WHERE strftime('%Y', OrderDate) = '2017'"
        else:
            sql = ("SELECT count(*) FROM Orders WHERE year(OrderDate) = 2017 "
                   "AND date_diff('day', OrderDate, ShippedDate) > 1")
        verdict = validate(sql, db.schema)
        assert verdict.ok, verdict.error
        assert execute(db, verdict.sql).rows == ((1,),)
        assert Check(db.schema, judge=lambda q: validate(q, db.schema).ok).start().feed(sql).can_end()


def test_the_schema_part_of_the_prompt_is_the_same_for_every_question(store, fake_model):
    model = fake_model("SELECT count(*) FROM Orders")
    with open_database(store) as db:
        setup = Setup(db, model, Sampling(candidates=1, max_tokens=32))
        for question in ("How many orders in 2017?", "Total unit price of order details?", "Orders on Dec 19, 2020?"):
            deliberate(question, setup)
    assert len({call["cache_prefix"] for call in model.calls}) == 1


# -- views -------------------------------------------------------------------------------------------------------------

def test_a_view_is_one_line_after_the_tables(store):
    text = rendered(store)
    assert text.count("CREATE VIEW") == 1
    assert 'CREATE VIEW "Sales Totals" (OrderID, OrderDate, Total);' in text
    assert text.index("CREATE VIEW") > text.rindex("CREATE TABLE")
    with open_database(store) as db:
        assert "View 'Sales Totals' (OrderID, OrderDate, Total)" in render_schema(db.schema, "strict")


def test_a_view_the_model_uses_validates_passes_the_check_and_the_grammar_and_runs(store):
    sql = 'SELECT Total FROM "Sales Totals" WHERE OrderID = 1'
    with open_database(store) as db:
        verdict = validate(sql, db.schema)
        assert verdict.ok, verdict.error
        assert execute(db, verdict.sql).rows == ((10.0,),)
        assert Check(db.schema, judge=lambda q: validate(q, db.schema).ok).start().feed(sql).can_end()
        assert '"Sales Totals\\""' in schema_grammar(db.schema, db.dialect) or \
            'Sales Totals' in schema_grammar(db.schema, db.dialect)
        assert not validate('SELECT Nope FROM "Sales Totals"', db.schema).ok


def test_pruning_keeps_a_view_only_when_the_question_names_it(store):
    with open_database(store) as db:
        named = prune_schema(db.schema, "What are the sales totals of each order?", max_tables=1)
        other = prune_schema(db.schema, "What is the total of each order?", max_tables=1)
    assert "Sales Totals" in [t.name for t in named.tables]
    assert "Sales Totals" not in [t.name for t in other.tables]


def test_views_come_after_the_tables_so_that_value_hints_read_the_tables_first(store):
    """Hints share one time budget, read in schema order: a slow view cannot keep a table's values from the model."""
    with open_database(store) as db:
        assert [t.view for t in db.schema.tables] == [False, False, False, True]


# -- names with spaces -------------------------------------------------------------------------------------------------

def test_names_with_spaces_are_quoted_wherever_the_model_reads_them(store):
    with open_database(store) as db:
        ddl, strict = render_schema(db.schema, "ddl"), render_schema(db.schema, "strict")
        assert 'CREATE TABLE "Order Details" (' in ddl and '"Unit Price" ' in ddl
        assert "Table 'Order Details' (OrderID, ProductID, \"Unit Price\", Quantity)" in strict
        hints = render_hints(value_hints(db.schema, db, "unit price of the order details"), db.schema)
        assert hints == ""  # numbers are not hinted; the quoting of a hint is in hints' own doctest
        repair = valid_names("SELECT 1 FROM x", db.schema)
        assert '; "Order Details"(OrderID, ProductID, "Unit Price", Quantity);' in repair
        missing = validate('SELECT 1 FROM "Order Detail"', db.schema)
        assert '"Order Details"' in missing.error


@pytest.mark.parametrize("sql", [
    'SELECT SUM("Unit Price" * Quantity) FROM "Order Details"',
    'SELECT SUM(T1."Unit Price" * T1.Quantity) FROM "Order Details" AS T1 JOIN Orders AS T2 ON T1.OrderID = T2.OrderID',
    'SELECT SUM("Order Details"."Unit Price") FROM "Order Details" WHERE "Unit Price" > 1',
])
def test_a_query_of_names_with_spaces_validates_passes_the_check_and_runs(store, sql):
    with open_database(store) as db:
        verdict = validate(sql, db.schema)
        assert verdict.ok, verdict.error
        assert execute(db, verdict.sql).rows[0][0] is not None
        cursor = Check(db.schema, judge=lambda q: validate(q, db.schema).ok).start()
        assert cursor.feed(sql).can_end()
        assert cursor.feed('SELECT 1 FROM "Order Det') is not None
        assert cursor.feed('SELECT 1 FROM "Order Detail" ') is None
        assert cursor.feed('SELECT T1."Unit Cost" FROM "Order Details" AS T1') is None


def test_the_grammar_spells_names_with_spaces_quoted(store):
    with open_database(store) as db:
        grammar = schema_grammar(db.schema, db.dialect, prefix="SELECT")
    table_rule = next(line for line in grammar.splitlines() if line.startswith("table ::="))
    assert '"\\"" ("Order Details\\""' in table_rule or '"\\"Order Details\\""' in table_rule
    assert "Unit Price\\\"" in grammar


def test_pruning_reads_names_with_spaces_as_words(store):
    with open_database(store) as db:
        pruned = prune_schema(db.schema, "What is the average unit price?", max_tables=1)
        assert [t.name for t in pruned.tables] == ["Order Details"]


# -- pruning a real-sized schema ---------------------------------------------------------------------------------------

NORTHWIND_TABLES = {
    "Categories": "CategoryID INTEGER PRIMARY KEY, CategoryName TEXT, Description TEXT",
    "CustomerDemographics": "CustomerTypeID TEXT PRIMARY KEY, CustomerDesc TEXT",
    "Customers": "CustomerID TEXT PRIMARY KEY, CompanyName TEXT, ContactName TEXT, City TEXT, Country TEXT",
    "CustomerCustomerDemo": "CustomerID TEXT REFERENCES Customers(CustomerID), "
                            "CustomerTypeID TEXT REFERENCES CustomerDemographics(CustomerTypeID)",
    "Employees": "EmployeeID INTEGER PRIMARY KEY, LastName TEXT, FirstName TEXT, Title TEXT, BirthDate DATE, "
                 "HireDate DATE, City TEXT, Country TEXT",
    "Regions": "RegionID INTEGER PRIMARY KEY, RegionDescription TEXT",
    "Territories": "TerritoryID TEXT PRIMARY KEY, TerritoryDescription TEXT, "
                   "RegionID INTEGER REFERENCES Regions(RegionID)",
    "EmployeeTerritories": "EmployeeID INTEGER REFERENCES Employees(EmployeeID), "
                           "TerritoryID TEXT REFERENCES Territories(TerritoryID)",
    "Shippers": "ShipperID INTEGER PRIMARY KEY, CompanyName TEXT, Phone TEXT",
    "Suppliers": "SupplierID INTEGER PRIMARY KEY, CompanyName TEXT, ContactName TEXT, City TEXT, Country TEXT",
    "Products": "ProductID INTEGER PRIMARY KEY, ProductName TEXT, SupplierID INTEGER REFERENCES Suppliers(SupplierID), "
                "CategoryID INTEGER REFERENCES Categories(CategoryID), QuantityPerUnit TEXT, UnitPrice REAL, "
                "UnitsInStock INTEGER, Discontinued INTEGER",
    "Orders": "OrderID INTEGER PRIMARY KEY, CustomerID TEXT REFERENCES Customers(CustomerID), "
              "EmployeeID INTEGER REFERENCES Employees(EmployeeID), OrderDate DATETIME, ShippedDate DATETIME, "
              "ShipVia INTEGER REFERENCES Shippers(ShipperID), Freight REAL, ShipCity TEXT, ShipCountry TEXT",
    "Order Details": "OrderID INTEGER REFERENCES Orders(OrderID), ProductID INTEGER REFERENCES Products(ProductID), "
                     "UnitPrice REAL, Quantity INTEGER, Discount REAL",
}
#: Northwind's views, each over the tables (the names are what matters: they share the questions' words).
NORTHWIND_VIEWS = {
    "Alphabetical list of products": "Products", "Current Product List": "Products", "Orders Qry": "Orders",
    "Products Above Average Price": "Products", "Products by Category": "Products", "Quarterly Orders": "Orders",
    "Invoices": "Orders", "Order Details Extended": '"Order Details"', "Order Subtotals": '"Order Details"',
    "Product Sales for 1997": "Products", "Category Sales for 1997": "Categories", "Sales by Category": "Categories",
    "Sales Totals by Amount": "Orders", "Summary of Sales by Quarter": "Orders", "Summary of Sales by Year": "Orders",
    "Ten Most Expensive Products": "Products", "Customer and Suppliers by City": "Customers",
}


def northwind(path):
    with sqlite3.connect(path) as connection:
        for name, columns in NORTHWIND_TABLES.items():
            connection.execute(f'CREATE TABLE "{name}" ({columns})')
        for name, source in NORTHWIND_VIEWS.items():
            connection.execute(f'CREATE VIEW "{name}" AS SELECT * FROM {source}')
        connection.execute("INSERT INTO Orders (OrderID, OrderDate) VALUES (10248, '1996-07-04 00:00:00')")
    return path


@pytest.mark.parametrize("question", ["What was the total revenue by category in 1997?",
                                      "Total revenue of each product in 1997"])
def test_pruning_to_fit_keeps_the_table_a_revenue_question_needs_whatever_views_share_its_words(tmp_path, question):
    with open_database(northwind(tmp_path / "northwind.sqlite")) as db:
        whole = len(render_schema(db.schema, "ddl"))
        ladder = list(schema_ladder(db.schema, question))
        fits = next(s for s in ladder if len(render_schema(s, "ddl")) <= whole / 3)
        names = [t.name for t in fits.tables]
        assert {"Order Details", "Orders", "Products"} <= set(names), names
        assert not any(t.view for t in fits.tables)


def test_a_model_with_a_short_context_is_told_in_one_short_line(tmp_path, fake_model):
    path = northwind(tmp_path / "northwind.sqlite")
    fake_model("SELECT count(*) FROM Orders", context_length=420)
    result = runner.invoke(app, ["ask", "--db", str(path), "--model", "fake", "-n", "1",
                                 "How many orders were shipped in 1997?"])
    assert result.exit_code == 0, result.output
    line = result.stderr.strip()
    assert line.startswith("edgesql: schema pruned to ") and " of 13 tables and 0 of 17 views to fit" in line
    assert len(line) < 140 and "Order Details" not in line


def test_the_note_is_empty_when_nothing_was_left_out(store):
    with open_database(store) as db:
        assert fit_note(db.schema, db.schema) == ""
