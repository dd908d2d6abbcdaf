-- A meeting without a server is NULL, not a sentinel id (SQLite cannot drop NOT NULL in
-- place, so the table is rebuilt).
CREATE TABLE meetings_new (
    meeting_key TEXT PRIMARY KEY NOT NULL,
    world_id TEXT NOT NULL,
    room_id TEXT,
    call_id TEXT,
    server_id INTEGER,
    meeting_id TEXT NOT NULL UNIQUE,
    attendee_pw TEXT NOT NULL,
    moderator_pw TEXT NOT NULL,
    create_time BIGINT,
    created_at BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL DEFAULT 0,
    seen_at BIGINT,
    -- When the end-callback token of the create that started the meeting's current BBB
    -- instance was issued (ms); callbacks from older instances are stale.
    callback_issued_at BIGINT,
    -- When BBB reported the meeting ended (end callback); cleared when it is created again.
    ended_at BIGINT
);
INSERT INTO meetings_new (meeting_key, world_id, room_id, call_id, server_id, meeting_id,
    attendee_pw, moderator_pw, create_time, created_at, updated_at, seen_at)
SELECT meeting_key, world_id, room_id, call_id, NULLIF(server_id, 0), meeting_id,
    attendee_pw, moderator_pw, create_time, created_at, updated_at, seen_at
FROM meetings;
DROP TABLE meetings;
ALTER TABLE meetings_new RENAME TO meetings;

-- Keys the gateway generates once and every instance shares (the end-callback MAC key).
CREATE TABLE gateway_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL DEFAULT 0
);
