-- Runs once, when the PostgreSQL volume is created (docker-entrypoint-initdb.d).
-- One database per service: each service owns its data and no service reads another's.
-- Tables are created by each service at start; the connecting user (POSTGRES_USER) owns them.
CREATE DATABASE seeds;
CREATE DATABASE needs;
CREATE DATABASE matcher;
CREATE DATABASE notifications;
