-- Tricky queries a model may well write, which must still run.

-- title: a plain count
-- expect: ok
-- rows: 1
SELECT count(*) FROM customers

-- title: a window function
-- expect: ok
-- rows: 5
SELECT customer_id, order_id, row_number() OVER (PARTITION BY customer_id ORDER BY order_id) AS nth FROM orders ORDER BY customer_id, order_id

-- title: rank and a running total
-- expect: ok
-- rows: 5
SELECT product_id, price, rank() OVER (ORDER BY price DESC) AS r, sum(price) OVER (ORDER BY product_id) AS running FROM products ORDER BY product_id

-- title: lag and lead
-- expect: ok
-- rows: 5
SELECT order_id, lag(order_id) OVER (ORDER BY order_id) AS prev, lead(order_id, 1) OVER (ORDER BY order_id) AS next FROM orders ORDER BY order_id

-- title: a CTE with a join and grouping
-- expect: ok
-- rows: 3
WITH spend AS (SELECT o.customer_id, sum(i.quantity * i.unit_price) AS total FROM orders AS o JOIN order_items AS i ON i.order_id = o.order_id GROUP BY o.customer_id) SELECT c.first_name, s.total FROM spend AS s JOIN customers AS c ON c.customer_id = s.customer_id ORDER BY s.total DESC LIMIT 3

-- title: two CTEs, one using the other
-- expect: ok
-- rows: 1
WITH a AS (SELECT customer_id FROM orders), b AS (SELECT count(DISTINCT customer_id) AS n FROM a) SELECT n FROM b

-- title: a bounded recursive CTE
-- expect: ok
-- rows: 5
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT n FROM r

-- title: UNION, INTERSECT and EXCEPT
-- expect: ok
-- rows: 1
SELECT count(*) FROM (SELECT customer_id FROM customers EXCEPT SELECT customer_id FROM orders UNION SELECT 0 INTERSECT SELECT 0) AS t

-- title: a correlated subquery
-- expect: ok
-- rows: 5
SELECT first_name, (SELECT count(*) FROM orders AS o WHERE o.customer_id = c.customer_id) AS n FROM customers AS c ORDER BY c.customer_id

-- title: CASE, COALESCE and NULLIF
-- expect: ok
-- rows: 5
SELECT CASE WHEN email IS NULL THEN 'none' ELSE 'some' END AS has_email, coalesce(email, 'n/a') AS email, nullif(city, '') AS city FROM customers ORDER BY customer_id

-- title: HAVING and aggregates
-- expect: ok
-- rows: 1
SELECT count(*) FROM (SELECT customer_id, count(*) AS n, avg(customer_id) AS a, min(order_id), max(order_id) FROM orders GROUP BY customer_id HAVING count(*) >= 1) AS t

-- title: string functions
-- expect: ok
-- rows: 5
SELECT upper(first_name) || ' ' || lower(last_name) AS name, length(city), substr(country, 1, 3), replace(city, 'a', 'A'), trim('  x  ') FROM customers ORDER BY customer_id

-- title: a modest lpad and a printf with a precision
-- expect: ok
-- rows: 5
-- engines: duckdb
SELECT lpad(CAST(product_id AS TEXT), 5, '0') AS code, printf('%.2f', price) AS shown FROM products ORDER BY product_id

-- title: printf with a width and a precision
-- expect: ok
-- rows: 5
-- engines: sqlite
SELECT printf('%05d', product_id) AS code, printf('%8.2f', price) AS shown FROM products ORDER BY product_id

-- title: LIKE with a pattern that mentions DROP
-- expect: ok
-- rows: 0
SELECT first_name FROM customers WHERE first_name LIKE '%DROP%TABLE%'

-- title: IN with a list, BETWEEN and IS NULL
-- expect: ok
-- rows: 1
SELECT count(*) FROM orders WHERE status IN ('shipped', 'cancelled') AND order_id BETWEEN 1 AND 100 AND shipped_date IS NOT NULL

-- title: a double-quoted table name
-- expect: ok
-- rows: 1
SELECT count(*) FROM "customers"

-- title: a schema-qualified table name
-- expect: ok
-- rows: 1
SELECT count(*) FROM main.customers

-- title: a trailing semicolon
-- expect: ok
-- rows: 1
SELECT count(*) FROM orders;

-- title: a query over several lines with comments
-- expect: ok
-- rows: 3
-- the three most expensive products
SELECT name, price
FROM products   -- every product
ORDER BY price DESC
LIMIT 3

-- title: DISTINCT, ORDER BY and OFFSET
-- expect: ok
-- rows: 5
SELECT DISTINCT country FROM customers ORDER BY country LIMIT 5 OFFSET 0

-- title: a left join with NULLs
-- expect: ok
-- rows: 5
SELECT c.customer_id, o.order_id FROM customers AS c LEFT JOIN orders AS o ON o.customer_id = c.customer_id ORDER BY c.customer_id, o.order_id

-- title: DuckDB's FROM-first syntax
-- expect: ok
-- rows: 5
-- engines: duckdb
FROM customers SELECT first_name

-- title: DuckDB's range table function
-- expect: ok
-- rows: 3
-- engines: duckdb
SELECT * FROM range(3)

-- title: SQLite's date functions
-- expect: ok
-- rows: 1
-- engines: sqlite
SELECT strftime('%Y', order_date) AS year, count(*) FROM orders WHERE date(order_date) >= '2025-01-01' GROUP BY year

-- title: DuckDB's date functions
-- expect: ok
-- rows: 1
-- engines: duckdb
SELECT year(order_date) AS y, count(*) FROM orders WHERE order_date >= DATE '2025-01-01' GROUP BY y
