DROP TABLE gateway_secrets;
ALTER TABLE meetings DROP COLUMN ended_at;
ALTER TABLE meetings DROP COLUMN callback_issued_at;
UPDATE meetings SET server_id = 0 WHERE server_id IS NULL;
ALTER TABLE meetings ALTER COLUMN server_id SET NOT NULL;
