-- Open sessions pick up changes to their user's traits and moderation state: every such change
-- bumps `version` and sets `changed_at` (ms), and each gateway instance periodically reads the
-- users changed since its last look.
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN changed_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX users_changed_at ON users (changed_at);
