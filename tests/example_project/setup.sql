CREATE USER reporting PASSWORD 'Reporting1';
CREATE TABLE orders (id int identity(1,1), customer varchar(40) distkey, amount decimal(10,2), placed timestamp sortkey)
    diststyle key;
INSERT INTO orders (customer, amount, placed) VALUES ('acme', 10.50, '2024-01-01'), ('acme', 4.50, '2024-01-02'),
    ('globex', 7.00, '2024-02-01');
GRANT SELECT ON orders TO reporting;
