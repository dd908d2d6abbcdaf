//! `demo_state`: values `serve --demo` generates once per database (its admin token) and reuses
//! on later starts, so the tokens it printed keep working after a restart.

use diesel::prelude::*;

use crate::db::schema::demo_state;
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// The stored value of `name`, storing `candidate` first when there is none (safe when two
/// demos start on one database at once: both get the value stored first).
pub fn get_or_insert(conn: &mut DbConn, name: &str, candidate: &str) -> Result<String, DbError> {
    Ok(with_conn!(conn, |c| {
        diesel::insert_into(demo_state::table)
            .values((demo_state::name.eq(name), demo_state::value.eq(candidate)))
            .on_conflict(demo_state::name)
            .do_nothing()
            .execute(c)?;
        demo_state::table
            .find(name)
            .select(demo_state::value)
            .first::<String>(c)
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::for_each_backend;

    #[test]
    fn the_first_value_stays() {
        for_each_backend(|conn| {
            assert_eq!(get_or_insert(conn, "k", "one").unwrap(), "one");
            assert_eq!(get_or_insert(conn, "k", "two").unwrap(), "one");
            assert_eq!(get_or_insert(conn, "other", "two").unwrap(), "two");
        })
        .unwrap();
    }
}
