DROP INDEX users_last_active_at;
ALTER TABLE users DROP COLUMN last_active_at;
DROP TABLE placement_reservations;
ALTER TABLE meetings ADD COLUMN seen_at BIGINT;
DROP INDEX meetings_updated_at;
ALTER TABLE meetings DROP COLUMN creating_until;
ALTER TABLE meetings DROP COLUMN creating_by;
DROP TABLE leader_lease;
