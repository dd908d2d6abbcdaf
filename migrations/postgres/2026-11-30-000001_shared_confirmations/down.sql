ALTER TABLE meetings DROP COLUMN confirmed_at;
