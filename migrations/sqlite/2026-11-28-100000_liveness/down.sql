DROP TABLE gateway_secrets;
CREATE TABLE meetings_old (
    meeting_key TEXT PRIMARY KEY NOT NULL,
    world_id TEXT NOT NULL,
    room_id TEXT,
    call_id TEXT,
    server_id INTEGER NOT NULL,
    meeting_id TEXT NOT NULL UNIQUE,
    attendee_pw TEXT NOT NULL,
    moderator_pw TEXT NOT NULL,
    create_time BIGINT,
    created_at BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL DEFAULT 0,
    seen_at BIGINT
);
INSERT INTO meetings_old SELECT meeting_key, world_id, room_id, call_id, COALESCE(server_id, 0),
    meeting_id, attendee_pw, moderator_pw, create_time, created_at, updated_at, seen_at
FROM meetings;
DROP TABLE meetings;
ALTER TABLE meetings_old RENAME TO meetings;
