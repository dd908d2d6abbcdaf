DROP INDEX users_changed_at;
ALTER TABLE users DROP COLUMN changed_at;
ALTER TABLE users DROP COLUMN version;
