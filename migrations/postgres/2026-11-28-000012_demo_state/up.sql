-- Values `serve --demo` generated once and reuses on every later start with the same database
-- (its admin token), so what it printed keeps working after a restart.
CREATE TABLE demo_state (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
