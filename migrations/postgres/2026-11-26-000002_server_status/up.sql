-- Live health and load of each BBB server as last polled, shared with the CLI, the admin
-- routes and other gateway instances.
CREATE TABLE bbb_server_status (
    server_id INTEGER PRIMARY KEY NOT NULL,
    online BOOLEAN NOT NULL,
    meetings INTEGER NOT NULL DEFAULT 0,
    participants INTEGER NOT NULL DEFAULT 0,
    voice INTEGER NOT NULL DEFAULT 0,
    videos INTEGER NOT NULL DEFAULT 0,
    load DOUBLE PRECISION NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    polled_at BIGINT NOT NULL DEFAULT 0
);

-- Bumped by `server panic`: every gateway instance forgets the server's meetings when it sees
-- a new value.
ALTER TABLE bbb_servers ADD COLUMN panic_epoch BIGINT NOT NULL DEFAULT 0;
