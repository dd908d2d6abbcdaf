DROP TABLE bbb_server_status;
ALTER TABLE bbb_servers DROP COLUMN panic_epoch;
