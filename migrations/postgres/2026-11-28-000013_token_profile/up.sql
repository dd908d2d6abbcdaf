-- The `profile` claim of the user's last token: a login lays over the stored profile only the
-- claim's keys that changed since, so what the user edited survives reconnects with the same
-- token while a changed claim still updates the profile.
ALTER TABLE users ADD COLUMN token_profile TEXT;
