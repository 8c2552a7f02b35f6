-- The function allow-list: nothing that reaches files, the network, the environment or extensions.

-- title: read_csv
-- expect: refused
-- rule: function allow-list
SELECT * FROM read_csv('{dir}/secret.csv')

-- title: read_csv_auto
-- expect: refused
-- rule: function allow-list
SELECT * FROM read_csv_auto('{dir}/secret.csv')

-- title: read_csv with a list of files
-- expect: refused
-- rule: function allow-list
SELECT * FROM read_csv(['{dir}/secret.csv', '/etc/passwd'])

-- title: read_parquet
-- expect: refused
-- rule: function allow-list
SELECT * FROM read_parquet('{dir}/*.parquet')

-- title: read_json_auto
-- expect: refused
-- rule: function allow-list
SELECT * FROM read_json_auto('/etc/os-release')

-- title: read_ndjson
-- expect: refused
-- rule: function allow-list
SELECT * FROM read_ndjson('{dir}/secret.csv')

-- title: read_text
-- expect: refused
-- rule: function allow-list
SELECT content FROM read_text('/etc/hostname')

-- title: read_blob
-- expect: refused
-- rule: function allow-list
SELECT content FROM read_blob('{db}')

-- title: glob as a table function
-- expect: refused
SELECT * FROM glob('/etc/*')

-- title: glob as a scalar call with one argument
-- expect: refused
-- engines: duckdb
-- rule: function allow-list
SELECT glob('/etc/*')

-- title: parquet_metadata
-- expect: refused
-- rule: function allow-list
SELECT * FROM parquet_metadata('{dir}/x.parquet')

-- title: parquet_schema
-- expect: refused
-- rule: function allow-list
SELECT * FROM parquet_schema('{dir}/x.parquet')

-- title: sqlite_scan
-- expect: refused
-- rule: function allow-list
SELECT * FROM sqlite_scan('{db}', 'customers')

-- title: a file table function in a join
-- expect: refused
-- rule: function allow-list
SELECT c.first_name FROM customers AS c JOIN read_csv('{dir}/secret.csv') AS s ON true

-- title: a file table function in a subquery of WHERE
-- expect: refused
-- rule: function allow-list
SELECT first_name FROM customers WHERE EXISTS (SELECT 1 FROM read_csv('{dir}/secret.csv'))

-- title: a file table function hidden in a CTE
-- expect: refused
-- rule: function allow-list
WITH s AS (SELECT * FROM read_text('/etc/hostname')) SELECT * FROM s

-- title: a file table function after UNION
-- expect: refused
-- rule: function allow-list
SELECT first_name FROM customers UNION ALL SELECT content FROM read_text('/etc/hostname')

-- title: a string literal as a table
-- expect: refused
-- rule: file access
SELECT * FROM '/etc/passwd'

-- title: a string literal as a table in a join
-- expect: refused
-- rule: file access
SELECT * FROM customers, '{dir}/secret.csv'

-- title: a URL as a table
-- expect: refused
-- rule: file access
SELECT * FROM 'https://example.com/data.csv'

-- title: a quoted file name as a table
-- expect: refused
-- rule: file access
SELECT * FROM "{dir}/secret.csv"

-- title: a quoted name with a file extension as a table
-- expect: refused
-- rule: file access
SELECT * FROM "secret.csv"

-- title: a home-relative name as a table
-- expect: refused
-- rule: file access
SELECT * FROM "~/secret"

-- title: getenv
-- expect: refused
-- rule: function allow-list
SELECT getenv('HOME')

-- title: current_setting
-- expect: refused
-- rule: function allow-list
SELECT current_setting('temp_directory')

-- title: duckdb_settings
-- expect: refused
-- rule: function allow-list
SELECT * FROM duckdb_settings()

-- title: pragma table functions
-- expect: refused
-- rule: function allow-list
SELECT * FROM pragma_table_info('customers')

-- title: SQLite load_extension
-- expect: refused
-- rule: function allow-list
SELECT load_extension('/opt/evil.so')

-- title: SQLite readfile
-- expect: refused
-- rule: function allow-list
SELECT readfile('/etc/passwd')

-- title: SQLite writefile
-- expect: refused
-- rule: function allow-list
SELECT writefile('{dir}/planted.txt', 'x')

-- title: SQLite fts3_tokenizer
-- expect: refused
-- rule: function allow-list
SELECT fts3_tokenizer('simple')

-- title: query() runs SQL from a string
-- expect: refused
-- rule: function allow-list
SELECT * FROM query('SELECT * FROM customers')

-- title: a forbidden call inside a lambda
-- expect: refused
-- rule: function allow-list
SELECT list_transform([1, 2], x -> getenv('HOME'))

-- title: a forbidden call deep in an expression
-- expect: refused
-- rule: function allow-list
SELECT first_name FROM customers WHERE length(coalesce(email, readfile('/etc/passwd'))) > 0

-- title: zeroblob bomb
-- expect: refused
-- rule: function allow-list
SELECT length(zeroblob(1000000000))

-- title: randomblob bomb
-- expect: refused
-- rule: function allow-list
SELECT randomblob(1000000000)

-- title: repeat bomb
-- expect: refused
-- rule: function allow-list
SELECT length(repeat('x', 2000000000))

-- title: lpad bomb
-- expect: refused
-- rule: size limit
SELECT length(lpad('', 2000000000, 'x'))

-- title: rpad to a width from a column
-- expect: refused
-- rule: size limit
SELECT rpad(first_name, customer_id * 100000000) FROM customers

-- title: printf width from an argument
-- expect: refused
-- rule: size limit
SELECT length(printf('%.*c', 2000000000, 'x'))

-- title: printf with a huge width
-- expect: refused
-- rule: size limit
SELECT length(printf('%02000000000d', 1))

-- title: printf with a format from the data
-- expect: refused
-- rule: size limit
SELECT printf(first_name, 1) FROM customers

-- title: format with a huge width
-- expect: refused
-- rule: size limit
SELECT length(format('{:>2000000000}', 1))

-- title: sleep
-- expect: refused
-- rule: function allow-list
SELECT sleep(60)
