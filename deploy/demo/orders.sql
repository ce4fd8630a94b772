-- Demo data for the example connection orders-db (make demo-db); safe to run again.
CREATE TABLE IF NOT EXISTS customers (id int PRIMARY KEY, name text, email text, phone text,
                                      card_number text, note text);
INSERT INTO customers VALUES
  (1, 'Ada Lovelace', 'ada@example.com', '+44 20 7946 0000', '4111 1111 1111 1111', 'VIP'),
  (2, 'Alan Turing', 'alan@example.org', '+44 161 496 0000', '5500 0000 0000 0004',
   'ssn on file: 123-45-6789')
ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, customer_id int REFERENCES customers,
                                   total numeric(10, 2), placed_at timestamptz DEFAULT now());
INSERT INTO orders (id, customer_id, total) VALUES (100, 1, 99.50), (101, 2, 12.00)
ON CONFLICT (id) DO NOTHING;
