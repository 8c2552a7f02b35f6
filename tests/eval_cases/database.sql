-- The database every case in this folder runs on (built by tests/test_eval.py).
CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER, net_worth REAL, label TEXT);
INSERT INTO singer VALUES
    (1, 'Joe Sharp', 'Netherlands', 52, 30.0, NULL),
    (2, 'Timbaland', 'United States', 32, 1.5, 'Mosley'),
    (3, 'Justin Brown', 'France', 29, 0.1, NULL),
    (4, 'Rose White', 'France', 41, 0.2, 'Sony'),
    (5, 'John Nizinik', 'France', 43, 12.25, 'Sony'),
    (6, 'Tribal King', 'France', 25, 0.3, NULL);
CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, singer_id INTEGER, year INTEGER);
INSERT INTO concert VALUES (1, 2, 2014), (2, 2, 2015), (3, 3, 2014), (4, 5, 2015);
