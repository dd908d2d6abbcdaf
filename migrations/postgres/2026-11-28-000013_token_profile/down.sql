ALTER TABLE users DROP COLUMN token_profile;
