CREATE TABLE worlds (
    id TEXT PRIMARY KEY NOT NULL,
    title TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    jwt_secrets TEXT NOT NULL DEFAULT '[]',
    roles TEXT,
    trait_grants TEXT NOT NULL DEFAULT '{}',
    bbb_defaults TEXT NOT NULL DEFAULT '{}',
    bbb_disable_privatechat BOOLEAN NOT NULL DEFAULT 1,
    bbb_style_url TEXT,
    version BIGINT NOT NULL DEFAULT 1,
    updated_at BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE rooms (
    world_id TEXT NOT NULL REFERENCES worlds(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,
    modules TEXT NOT NULL DEFAULT '[]',
    trait_grants TEXT,
    PRIMARY KEY (world_id, id)
);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    world_id TEXT NOT NULL REFERENCES worlds(id) ON DELETE CASCADE,
    token_id TEXT,
    client_id TEXT,
    profile TEXT NOT NULL DEFAULT '{}',
    traits TEXT NOT NULL DEFAULT '[]',
    moderation_state TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL DEFAULT 0,
    UNIQUE (world_id, token_id),
    UNIQUE (world_id, client_id)
);

-- Explicit role grants by token uid; room_id '' means world-wide.
CREATE TABLE grants (
    world_id TEXT NOT NULL REFERENCES worlds(id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    room_id TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL,
    PRIMARY KEY (world_id, uid, room_id, role)
);

CREATE TABLE bbb_servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    url TEXT NOT NULL UNIQUE,
    secret TEXT NOT NULL,
    checksum TEXT NOT NULL DEFAULT 'sha256',
    weight DOUBLE NOT NULL DEFAULT 1.0,
    tag TEXT,
    world_id TEXT,
    state TEXT NOT NULL DEFAULT 'enabled',
    created_at BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL DEFAULT 0
);

-- The current placement of each room's or call's meeting.
CREATE TABLE meetings (
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
    updated_at BIGINT NOT NULL DEFAULT 0
);

-- Every server a meeting id was ever placed on, so recordings can be found after a move.
CREATE TABLE meeting_placements (
    meeting_id TEXT NOT NULL,
    server_id INTEGER NOT NULL,
    placed_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (meeting_id, server_id)
);

CREATE TABLE calls (
    id TEXT PRIMARY KEY NOT NULL,
    world_id TEXT NOT NULL REFERENCES worlds(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE call_members (
    call_id TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    PRIMARY KEY (call_id, uid)
);
