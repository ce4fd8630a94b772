-- Runs once, when the compose postgres volume is first initialised: the example upstream
-- database behind the `orders-db` connection (the audit store uses POSTGRES_DB=portcullis).
CREATE DATABASE orders;
