-- One database per service, as in the seed: each service owns its data. Run once by the
-- MariaDB container on its first start (docker-compose.yml).
CREATE DATABASE IF NOT EXISTS orders;
CREATE DATABASE IF NOT EXISTS payments;
CREATE DATABASE IF NOT EXISTS deliveries;
CREATE DATABASE IF NOT EXISTS order_status;
GRANT ALL PRIVILEGES ON orders.* TO 'tramline'@'%';
GRANT ALL PRIVILEGES ON payments.* TO 'tramline'@'%';
GRANT ALL PRIVILEGES ON deliveries.* TO 'tramline'@'%';
GRANT ALL PRIVILEGES ON order_status.* TO 'tramline'@'%';
