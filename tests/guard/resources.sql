-- The resource limits: a time limit, a row cap, and a memory cap, so that no query runs away.

-- title: an endless recursive CTE counted
-- expect: timeout
-- timeout: 0.5
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r

-- title: an endless recursive CTE sorted
-- expect: timeout
-- timeout: 0.5
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r ORDER BY n DESC

-- title: an endless recursive CTE read row by row stops at the row cap
-- expect: ok
-- rows: 5
-- timeout: 0.5
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r

-- title: a recursive CTE that doubles a string
-- expect: stopped
-- timeout: 0.5
-- engines: duckdb
WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r) SELECT max(length(s)) FROM r

-- title: a recursive CTE that doubles a string hits SQLite's length limit
-- expect: failed
-- timeout: 5
-- engines: sqlite
WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r) SELECT max(length(s)) FROM r

-- title: a cross join of every table
-- expect: timeout
-- timeout: 0.5
SELECT count(*) FROM customers, products, orders, order_items AS a, order_items AS b

-- title: a cross join sorted
-- expect: timeout
-- timeout: 0.5
SELECT a.order_item_id FROM order_items AS a, order_items AS b, order_items AS c ORDER BY a.unit_price * b.unit_price * c.unit_price DESC

-- title: a cross join read row by row stops at the row cap
-- expect: ok
-- rows: 5
SELECT a.order_item_id, b.order_item_id, c.order_item_id FROM order_items AS a, order_items AS b, order_items AS c

-- title: a huge generated series summed
-- expect: timeout
-- timeout: 0.5
-- engines: duckdb
SELECT sum(a.range * b.range) FROM range(100000000) AS a, range(1000) AS b

-- title: string_agg over a cross join
-- expect: timeout
-- timeout: 0.5
SELECT length(string_agg(a.first_name || b.last_name || c.city, ',')) FROM customers AS a, customers AS b, customers AS c, order_items AS d
