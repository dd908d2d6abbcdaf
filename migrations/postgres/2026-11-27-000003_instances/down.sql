ALTER TABLE meetings DROP COLUMN seen_at;
ALTER TABLE bbb_server_status DROP COLUMN largest_meeting;
ALTER TABLE bbb_server_status DROP COLUMN listeners;
ALTER TABLE bbb_server_status DROP COLUMN last_error;
ALTER TABLE bbb_server_status DROP COLUMN bbb_version;
