-- The statement check: one statement, and only a query.

-- title: multi-statement smuggling
-- expect: refused
-- rule: one statement
SELECT 1; DROP TABLE customers

-- title: multi-statement smuggling after a valid query with a trailing comment
-- expect: refused
-- rule: one statement
SELECT count(*) FROM customers; DELETE FROM orders -- tidy up

-- title: a second statement after a semicolon inside no string
-- expect: refused
-- rule: one statement
SELECT 'a;b' AS x; SELECT 2

-- title: an empty query
-- expect: refused
-- rule: one statement
;

-- title: only a comment
-- expect: refused
-- rule: one statement
-- nothing to see here

-- title: DROP TABLE
-- expect: refused
-- rule: read-only
DROP TABLE customers

-- title: DELETE
-- expect: refused
-- rule: read-only
DELETE FROM orders WHERE order_id > 0

-- title: UPDATE
-- expect: refused
-- rule: read-only
UPDATE products SET price = 0

-- title: INSERT
-- expect: refused
-- rule: read-only
INSERT INTO customers (customer_id, first_name) VALUES (999, 'Mallory')

-- title: INSERT … SELECT
-- expect: refused
-- rule: read-only
INSERT INTO customers SELECT * FROM customers

-- title: REPLACE INTO
-- expect: refused
-- engines: sqlite
REPLACE INTO customers (customer_id, first_name) VALUES (1, 'Mallory')

-- title: SQLite's WITH … DELETE
-- expect: refused
-- rule: read-only
WITH doomed AS (SELECT order_id FROM orders) DELETE FROM orders WHERE order_id IN (SELECT order_id FROM doomed)

-- title: DuckDB's DELETE … RETURNING inside a CTE
-- expect: refused
WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone

-- title: CREATE TABLE … AS SELECT
-- expect: refused
-- rule: read-only
CREATE TABLE loot AS SELECT * FROM customers

-- title: CREATE TEMP TABLE
-- expect: refused
-- rule: read-only
CREATE TEMP TABLE scratch (x INTEGER)

-- title: CREATE TEMP VIEW
-- expect: refused
-- rule: read-only
CREATE TEMP VIEW v AS SELECT 1

-- title: CREATE INDEX
-- expect: refused
-- rule: read-only
CREATE INDEX ix ON customers (city)

-- title: CREATE TRIGGER
-- expect: refused
-- engines: sqlite
CREATE TRIGGER t AFTER INSERT ON orders BEGIN DELETE FROM customers; END

-- title: ALTER TABLE
-- expect: refused
-- rule: read-only
ALTER TABLE customers ADD COLUMN pwned TEXT

-- title: SELECT … INTO a new table
-- expect: refused
-- rule: read-only
SELECT * INTO loot FROM customers

-- title: ATTACH another file
-- expect: refused
-- rule: read-only
ATTACH '{dir}/other.db' AS other

-- title: ATTACH the database itself
-- expect: refused
-- rule: read-only
ATTACH '{db}' AS again

-- title: ATTACH an in-memory database
-- expect: refused
-- rule: read-only
ATTACH ':memory:' AS scratch

-- title: DETACH
-- expect: refused
-- rule: read-only
DETACH DATABASE main

-- title: PRAGMA query_only off
-- expect: refused
-- rule: read-only
PRAGMA query_only = 0

-- title: PRAGMA journal_mode WAL
-- expect: refused
-- rule: read-only
PRAGMA journal_mode = WAL

-- title: PRAGMA writable_schema
-- expect: refused
-- rule: read-only
PRAGMA writable_schema = 1

-- title: VACUUM
-- expect: refused
-- rule: read-only
VACUUM

-- title: VACUUM INTO a copy
-- expect: refused
-- rule: read-only
VACUUM INTO '{dir}/copy.db'

-- title: ANALYZE
-- expect: refused
-- rule: read-only
ANALYZE

-- title: REINDEX
-- expect: refused
-- engines: sqlite
REINDEX

-- title: COPY a table to a file
-- expect: refused
-- rule: read-only
COPY customers TO '{dir}/out.csv'

-- title: COPY a query to a file
-- expect: refused
-- rule: read-only
COPY (SELECT * FROM customers) TO '{dir}/out.parquet' (FORMAT PARQUET)

-- title: COPY FROM a file
-- expect: refused
-- rule: read-only
COPY customers FROM '{dir}/secret.csv'

-- title: EXPORT DATABASE
-- expect: refused
EXPORT DATABASE '{dir}/export'

-- title: IMPORT DATABASE
-- expect: refused
IMPORT DATABASE '{dir}'

-- title: INSTALL an extension
-- expect: refused
-- rule: read-only
INSTALL httpfs

-- title: LOAD an extension
-- expect: refused
-- rule: read-only
LOAD httpfs

-- title: SET a setting
-- expect: refused
-- rule: read-only
SET enable_external_access = true

-- title: SET threads
-- expect: refused
-- rule: read-only
SET threads = 64

-- title: RESET a setting
-- expect: refused
-- rule: read-only
RESET memory_limit

-- title: CALL a procedure
-- expect: refused
-- rule: read-only
CALL pragma_version()

-- title: BEGIN a transaction
-- expect: refused
-- rule: read-only
BEGIN TRANSACTION

-- title: CHECKPOINT
-- expect: refused
-- rule: read-only
CHECKPOINT

-- title: USE another database
-- expect: refused
-- rule: read-only
USE memory

-- title: CREATE MACRO
-- expect: refused
-- rule: read-only
CREATE MACRO twice(x) AS x * 2

-- title: CREATE SECRET
-- expect: refused
-- rule: read-only
CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')

-- title: EXPLAIN is not a query
-- expect: refused
-- rule: read-only
EXPLAIN SELECT * FROM customers

-- title: DESCRIBE is not a query
-- expect: refused
-- rule: read-only
DESCRIBE customers

-- title: SHOW TABLES is not a query
-- expect: refused
-- rule: read-only
SHOW TABLES

-- title: SUMMARIZE is not a query
-- expect: refused
-- engines: duckdb
SUMMARIZE customers

-- Statement splitting: only a real statement counts. A comment or a lone `;` after the last statement is nothing,
-- and a `;` inside a string, a quoted name or a comment splits nothing.

-- title: a comment after the final semicolon
-- expect: ok
-- rows: 1
SELECT ';' AS s; -- trailing note

-- title: a block comment after the final semicolon
-- expect: ok
-- rows: 1
SELECT count(*) FROM customers; /* the whole table */

-- title: comments and semicolons after the final semicolon
-- expect: ok
-- rows: 1
SELECT count(*) FROM orders; -- one
/* two; three */ ; -- four;

-- title: semicolons inside strings, a quoted name and comments
-- expect: ok
-- rows: 1
SELECT 'a;b' AS "x;y", ';' || ';' AS z -- a; comment
/* ; */ FROM customers /* DROP TABLE customers; */ LIMIT 1;

-- title: a second statement after a comment that follows the semicolon
-- expect: refused
-- rule: one statement
SELECT 1; -- harmless
DROP TABLE customers

-- title: a second statement after a block comment
-- expect: refused
-- rule: one statement
SELECT 1; /* harmless */ DELETE FROM orders

-- title: a second query after a comment holding a semicolon
-- expect: refused
-- rule: one statement
SELECT 1 AS x /* ; */; -- ;
SELECT 2

-- title: a comment that closes a block comment does not hide a statement
-- expect: refused
-- rule: one statement
SELECT 1; -- */
DROP TABLE customers
