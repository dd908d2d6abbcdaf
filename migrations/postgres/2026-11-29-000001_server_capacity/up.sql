-- Participants a server can carry; NULL: unlimited (placement compares load only).
ALTER TABLE bbb_servers ADD COLUMN capacity INTEGER;
-- Participants of the last poll with every young meeting counted at its expected size, so
-- other instances and `server list` see the same occupancy as the poller.
ALTER TABLE bbb_server_status ADD COLUMN occupancy INTEGER NOT NULL DEFAULT 0;
