-- Each microshop service owns its database (DESIGN.md: Data). The postgres image runs
-- this once, when its data volume is new, as POSTGRES_USER, which then owns all three.
CREATE DATABASE microshop_user;
CREATE DATABASE microshop_order;
CREATE DATABASE microshop_payment;
