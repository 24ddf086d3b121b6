-- One database per service: each service owns its data.
CREATE DATABASE seeds;
CREATE DATABASE needs;
CREATE DATABASE matcher;
CREATE DATABASE notifications;
