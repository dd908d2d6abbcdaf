DROP INDEX placement_reservations_placed_at;
DROP INDEX meetings_live;
