-- Each service owns its data: one database per store.
CREATE DATABASE exporter OWNER aragora;
CREATE DATABASE trainer OWNER aragora;
-- The API keys store the three services share (their *_AUTH_DATABASE_URL).
CREATE DATABASE auth OWNER aragora;
