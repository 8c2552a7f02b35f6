-- Comments, case, quoting, look-alike letters, nesting: the tricks that fool a text filter but not a syntax tree.

-- title: a DROP hidden after a line comment is only a comment
-- expect: ok
-- rows: 1
SELECT count(*) FROM customers -- ; DROP TABLE customers

-- title: a DROP hidden in a block comment is only a comment
-- expect: ok
-- rows: 1
SELECT /* ; DROP TABLE customers; */ count(*) FROM customers

-- title: a comment that closes early cannot smuggle a statement
-- expect: refused
-- rule: one statement
SELECT 1 /* */ ; DROP TABLE customers /* */

-- title: a line comment ending in a block-comment closer
-- expect: ok
-- rows: 1
SELECT 1 AS x -- */ ; DROP TABLE customers

-- title: a statement split by comments
-- expect: refused
DR/**/OP TABLE customers

-- title: a keyword written with a comment inside
-- expect: refused
DEL/* x */ETE FROM orders

-- title: mixed-case DROP
-- expect: refused
-- rule: read-only
dRoP tAbLe CuStOmErS

-- title: mixed-case ATTACH
-- expect: refused
-- rule: read-only
aTtAcH '{dir}/other.db' As other

-- title: mixed-case file function
-- expect: refused
-- rule: function allow-list
SELECT * FROM ReAd_CsV('{dir}/secret.csv')

-- title: a quoted function name
-- expect: refused
-- rule: function allow-list
SELECT "load_extension"('/opt/evil.so')

-- title: leading whitespace and newlines before DROP
-- expect: refused
-- rule: read-only


	  DROP TABLE customers

-- title: a semicolon inside a string is not a statement break
-- expect: ok
-- rows: 1
SELECT 'x; DROP TABLE customers; --' AS note

-- title: a string literal that reads like DROP TABLE
-- expect: ok
-- rows: 0
SELECT first_name FROM customers WHERE last_name = 'DROP TABLE customers'

-- title: a string literal that reads like ATTACH and PRAGMA
-- expect: ok
-- rows: 1
SELECT 'ATTACH ''/etc/passwd'' AS x; PRAGMA query_only = 0' AS text

-- title: a column alias named attach
-- expect: ok
-- rows: 3
SELECT city AS "attach" FROM customers ORDER BY customer_id LIMIT 3

-- title: column aliases named pragma and vacuum
-- expect: ok
-- rows: 2
SELECT first_name AS "pragma", last_name AS "vacuum" FROM customers ORDER BY customer_id LIMIT 2

-- title: a CTE named like a keyword
-- expect: ok
-- rows: 1
WITH "drop" AS (SELECT count(*) AS n FROM orders) SELECT n FROM "drop"

-- title: a quoted identifier that looks like a DROP statement
-- expect: ok
-- rows: 1
SELECT 1 AS "DROP TABLE customers"

-- title: a fullwidth SELECT is not SELECT
-- expect: refused
ＳＥＬＥＣＴ 1

-- title: a Cyrillic E in DELETE is not a keyword
-- expect: refused
DЕLETE FROM orders

-- title: a Cyrillic a in read_csv names no allowed function
-- expect: refused
-- rule: function allow-list
SELECT * FROM reаd_csv('{dir}/secret.csv')

-- title: a fullwidth COUNT names no allowed function
-- expect: refused
-- rule: function allow-list
SELECT ＣＯＵＮＴ(*) FROM customers

-- title: a Kelvin sign that Python lower-cases to k
-- expect: refused
-- rule: function allow-list
-- escapes: yes
SELECT unli\u212Aely(1)

-- title: a zero-width space inside a keyword
-- expect: refused
-- escapes: yes
DR\u200BOP TABLE customers

-- title: invalid UTF-8 in the query
-- expect: refused
-- rule: characters
-- escapes: yes
SELECT 1 AS x \udcff

-- title: a NUL byte ends nothing
-- expect: refused
-- rule: characters
-- escapes: yes
SELECT 1\x00; DROP TABLE customers

-- title: a NUL byte inside a string
-- expect: refused
-- rule: characters
-- escapes: yes
SELECT 'a\x00b'

-- title: a DuckDB nested comment
-- expect: ok
-- rows: 1
-- engines: duckdb
SELECT 1 AS x /* outer /* inner */ still comment */

-- title: a parenthesised query
-- expect: ok
-- rows: 1
(SELECT count(*) FROM customers)

-- title: text that trips sqlglot's own parser is refused, not a crash
-- expect: refused
-- rule: parse
SELECT VAR_MAP(name) FROM customers
