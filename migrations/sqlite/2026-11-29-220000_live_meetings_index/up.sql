-- What an instance loads at start: the meetings that may be running, however long the history.
CREATE INDEX meetings_live ON meetings (meeting_key) WHERE server_id IS NOT NULL AND ended_at IS NULL;
-- Retention deletes old reservations by age.
CREATE INDEX placement_reservations_placed_at ON placement_reservations (placed_at);
