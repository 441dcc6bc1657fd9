-- One database per node of deploy/compose.yaml (a node identity holds a database alone: STORE_LOCKED otherwise).
-- Run once by the postgres image when its data volume is new (docker-entrypoint-initdb.d).
CREATE DATABASE icn1;
CREATE DATABASE icn2;
CREATE DATABASE icn3;
CREATE DATABASE icn4;
CREATE DATABASE icn5;
CREATE DATABASE icn6;
CREATE DATABASE icn7;
CREATE DATABASE icn8;
CREATE DATABASE icn9;
CREATE DATABASE icn10;
