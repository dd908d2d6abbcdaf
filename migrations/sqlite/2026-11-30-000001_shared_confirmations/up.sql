-- When the create that last confirmed the meeting running was sent (ms, clock of the instance
-- that sent it). An instance about to re-create a meeting takes a confirmation stored after
-- what it knows instead of sending a second create.
ALTER TABLE meetings ADD COLUMN confirmed_at BIGINT;
