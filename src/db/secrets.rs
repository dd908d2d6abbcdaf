//! `gateway_secrets`: keys the gateway generates once and every instance sharing the database
//! must agree on (the MAC key of end-callback tokens). Never logged.

use diesel::prelude::*;

use crate::db::schema::gateway_secrets;
use crate::db::{now_ms, DbConn, DbError};
use crate::with_conn;

/// The value stored under `name`, storing `generate()` first when there is none. Instances
/// racing to create it all end up with the one that was stored first.
pub fn get_or_create(
    conn: &mut DbConn,
    name: &str,
    generate: impl FnOnce() -> String,
) -> Result<String, DbError> {
    let candidate = generate();
    let now = now_ms();
    with_conn!(conn, |c| {
        diesel::insert_into(gateway_secrets::table)
            .values((
                gateway_secrets::name.eq(name),
                gateway_secrets::value.eq(&candidate),
                gateway_secrets::created_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        Ok(gateway_secrets::table
            .find(name)
            .select(gateway_secrets::value)
            .first::<String>(c)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_support::for_each_backend;

    #[test]
    fn the_first_stored_value_wins() {
        for_each_backend(|conn| {
            let first = get_or_create(conn, "k", || "one".into()).unwrap();
            let second = get_or_create(conn, "k", || "two".into()).unwrap();
            assert_eq!((first.as_str(), second.as_str()), ("one", "one"));
            assert_eq!(get_or_create(conn, "other", || "x".into()).unwrap(), "x");
        });
    }
}
