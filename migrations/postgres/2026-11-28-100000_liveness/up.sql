-- A meeting without a server is NULL, not a sentinel id.
ALTER TABLE meetings ALTER COLUMN server_id DROP NOT NULL;
UPDATE meetings SET server_id = NULL WHERE server_id = 0;
-- When the end-callback token of the create that started the meeting's current BBB instance
-- was issued (ms); callbacks from older instances are stale.
ALTER TABLE meetings ADD COLUMN callback_issued_at BIGINT;
-- When BBB reported the meeting ended (end callback); cleared when it is created again.
ALTER TABLE meetings ADD COLUMN ended_at BIGINT;

-- Keys the gateway generates once and every instance shares (the end-callback MAC key).
CREATE TABLE gateway_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL DEFAULT 0
);
