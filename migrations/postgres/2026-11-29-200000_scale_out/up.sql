-- Which instance polls the fleet: a lease renewed while it leads and taken over once it
-- expired (times in ms of the database's clock).
CREATE TABLE leader_lease (
    name TEXT PRIMARY KEY NOT NULL,
    instance TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL
);

-- A create in flight, visible to every instance: the instance sending it and until when (ms,
-- database clock). Others wait for its result instead of sending their own.
ALTER TABLE meetings ADD COLUMN creating_by TEXT;
ALTER TABLE meetings ADD COLUMN creating_until BIGINT;
-- Instances read only the meetings changed since their last read.
CREATE INDEX meetings_updated_at ON meetings (updated_at);
-- Followers no longer take liveness from the leader's polls (confirmations are shared as they
-- happen), so nobody writes which meetings each poll listed.
ALTER TABLE meetings DROP COLUMN seen_at;

-- Meetings placed on a server that its polls have not counted yet, with the load they are
-- expected to bring, shared by every instance's placement.
CREATE TABLE placement_reservations (
    meeting_id TEXT PRIMARY KEY NOT NULL,
    server_id INTEGER NOT NULL,
    expected INTEGER NOT NULL,
    placed_at BIGINT NOT NULL
);
CREATE INDEX placement_reservations_server ON placement_reservations (server_id);

-- When a user last authenticated (ms): anonymous users idle for `retention.days` are deleted.
ALTER TABLE users ADD COLUMN last_active_at BIGINT NOT NULL DEFAULT 0;
UPDATE users SET last_active_at = created_at;
CREATE INDEX users_last_active_at ON users (last_active_at);
