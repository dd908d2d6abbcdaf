ALTER TABLE bbb_server_status DROP COLUMN occupancy;
ALTER TABLE bbb_servers DROP COLUMN capacity;
