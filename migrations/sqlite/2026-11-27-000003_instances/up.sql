-- Several gateway instances share one database: the leader publishes what followers cannot poll.
-- The BBB version (API index) and the last poll error of each server, for every instance's status.
ALTER TABLE bbb_server_status ADD COLUMN bbb_version TEXT;
ALTER TABLE bbb_server_status ADD COLUMN last_error TEXT;
-- The rest of the leader's poll figures, so followers' status pages show what the leader's does.
ALTER TABLE bbb_server_status ADD COLUMN listeners INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bbb_server_status ADD COLUMN largest_meeting INTEGER NOT NULL DEFAULT 0;
-- When the leader's poll last listed the meeting on its server (ms); equal to the server's
-- `bbb_server_status.polled_at` while the meeting runs, so followers know it is live.
ALTER TABLE meetings ADD COLUMN seen_at BIGINT;
