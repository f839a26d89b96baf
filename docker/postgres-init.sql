-- Each service owns its data: one database per store.
CREATE DATABASE exporter OWNER aragora;
CREATE DATABASE trainer OWNER aragora;
