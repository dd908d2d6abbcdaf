//! [`WorldCache`]: compiled worlds in memory, so permission checks and joins never query the
//! database. Worlds load on first use; [`WorldCache::refresh`] (run on an interval) reloads
//! those whose `worlds.version` changed, which is how imports by the CLI or other instances
//! reach this process.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use super::snapshot::WorldSnapshot;
use super::store::{load_snapshot, world_versions};
use crate::db::{Db, DbError};

/// World ids that existed at a refresh, with the time that refresh's read started.
type KnownIds = (std::time::Instant, HashSet<String>);

/// Shared, cheap-to-clone cache of world snapshots by world id.
#[derive(Clone)]
pub struct WorldCache {
    worlds: Arc<RwLock<HashMap<String, Arc<WorldSnapshot>>>>,
    /// Every world id that existed at the last refresh (`None` before the first one). A connect
    /// to an id not in it is answered without a query, so a flood of connects to made-up
    /// worlds cannot load the database; a new world is seen from the next refresh on.
    known_ids: Arc<RwLock<Option<KnownIds>>>,
    db: Db,
}

impl WorldCache {
    pub fn new(db: Db) -> WorldCache {
        WorldCache {
            worlds: Arc::default(),
            known_ids: Arc::default(),
            db,
        }
    }

    /// The cached snapshot, without touching the database.
    pub fn get_cached(&self, id: &str) -> Option<Arc<WorldSnapshot>> {
        self.worlds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// The world from memory, or loaded from the database on a miss; `None` when the world
    /// does not exist.
    pub async fn get(&self, world_id: &str) -> Result<Option<Arc<WorldSnapshot>>, DbError> {
        if let Some(w) = self.get_cached(world_id) {
            return Ok(Some(w));
        }
        if !self.may_exist(world_id) {
            return Ok(None);
        }
        let id = world_id.to_owned();
        let Some(loaded) = self.db.run(move |c| load_snapshot(c, &id)).await? else {
            return Ok(None);
        };
        Ok(Some(self.insert_if_newer(Arc::new(loaded))))
    }

    /// False only when the last refresh saw no world with this id.
    fn may_exist(&self, id: &str) -> bool {
        self.known_ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|(_, ids)| ids.contains(id))
    }

    /// Puts a snapshot in the cache, replacing any other version (after an in-process import,
    /// and for tests).
    pub fn insert(&self, world: Arc<WorldSnapshot>) {
        self.worlds
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(world.id.clone(), world);
    }

    /// Stores `world` unless a newer version is already cached (a concurrent refresh may have
    /// won); returns what is cached afterwards.
    fn insert_if_newer(&self, world: Arc<WorldSnapshot>) -> Arc<WorldSnapshot> {
        let mut map = self.worlds.write().unwrap_or_else(PoisonError::into_inner);
        match map.get(&world.id) {
            Some(cur) if cur.version > world.version => cur.clone(),
            _ => {
                map.insert(world.id.clone(), world.clone());
                world
            }
        }
    }

    /// Reloads every cached world whose stored version changed, and drops deleted ones.
    /// Returns how many cached worlds changed. A world that fails to load keeps its old
    /// snapshot (logged), so one bad row does not take a live world away.
    pub async fn refresh(&self) -> Result<usize, DbError> {
        let started = std::time::Instant::now();
        let versions: HashMap<String, i64> =
            self.db.run(world_versions).await?.into_iter().collect();
        {
            // Concurrent refreshes: only a read that started later may replace the id set, so
            // an older read finishing last cannot hide a world imported in between.
            let mut known = self
                .known_ids
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if known.as_ref().is_none_or(|(at, _)| *at <= started) {
                *known = Some((started, versions.keys().cloned().collect()));
            }
        }
        let cached: Vec<(String, i64)> = self
            .worlds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|w| (w.id.clone(), w.version))
            .collect();
        let mut changed = 0;
        for (id, version) in cached {
            match versions.get(&id) {
                None => {
                    self.worlds
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                    changed += 1;
                }
                Some(v) if *v == version => {}
                Some(_) => {
                    let load_id = id.clone();
                    match self.db.run(move |c| load_snapshot(c, &load_id)).await {
                        Ok(Some(w)) => {
                            self.insert_if_newer(Arc::new(w));
                            changed += 1;
                        }
                        Ok(None) => {
                            self.worlds
                                .write()
                                .unwrap_or_else(PoisonError::into_inner)
                                .remove(&id);
                            changed += 1;
                        }
                        Err(DbError::Invalid(msg)) => {
                            log::warn!("keeping the previous version of world {id:?}: {msg}");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::TestDb;
    use crate::world::{import_world, parse_world_file};
    use serde_json::json;

    fn world(id: &str, title: &str) -> crate::world::WorldFile {
        parse_world_file(
            &json!({"id": id, "title": title,
                "jwt_secrets": [{"issuer": "i", "audience": "a", "secret": "0123456789abcdef0123456789abcdef"}],
                "rooms": [{"id": "r", "name": "R"}]})
            .to_string(),
        )
        .unwrap()
    }

    async fn check(t: TestDb) {
        let cache = WorldCache::new(t.db.clone());
        assert!(cache.get("w").await.unwrap().is_none());
        assert!(cache.get_cached("w").is_none());
        let mut conn = t.db.get().unwrap();
        import_world(&mut conn, &world("w", "One")).unwrap();
        import_world(&mut conn, &world("other", "Other")).unwrap();
        let w = cache.get("w").await.unwrap().unwrap();
        assert_eq!((w.title.as_str(), w.version), ("One", 1));
        assert!(cache.get_cached("w").is_some());
        assert!(cache.get_cached("other").is_none(), "loaded on demand only");
        assert_eq!(cache.refresh().await.unwrap(), 0);

        import_world(&mut conn, &world("w", "Two")).unwrap();
        assert_eq!(cache.get_cached("w").unwrap().title, "One");
        assert_eq!(cache.refresh().await.unwrap(), 1);
        let w = cache.get_cached("w").unwrap();
        assert_eq!((w.title.as_str(), w.version), ("Two", 2));
        assert!(cache.get_cached("other").is_none());

        crate::with_conn!(&mut conn, |c| {
            use crate::db::schema::worlds;
            use diesel::prelude::*;
            diesel::delete(worlds::table.find("w")).execute(c)
        })
        .unwrap();
        assert_eq!(cache.refresh().await.unwrap(), 1);
        assert!(cache.get_cached("w").is_none());

        let mut manual = WorldSnapshot::from_file(&world("m", "Manual"), 0).unwrap();
        manual.title = "in memory".into();
        cache.insert(Arc::new(manual));
        assert_eq!(cache.get("m").await.unwrap().unwrap().title, "in memory");
        // A cached world missing from the database is dropped by refresh.
        assert_eq!(cache.refresh().await.unwrap(), 1);
        assert!(cache.get_cached("m").is_none());

        // After a refresh, unknown ids are answered from memory: a world imported since is
        // only seen from the next refresh on (proof that no query was made).
        assert!(cache.get("late").await.unwrap().is_none());
        import_world(&mut conn, &world("late", "Late")).unwrap();
        assert!(cache.get("late").await.unwrap().is_none());
        cache.refresh().await.unwrap();
        assert_eq!(cache.get("late").await.unwrap().unwrap().title, "Late");
    }

    #[tokio::test]
    async fn loads_on_demand_and_refreshes_changed_versions() {
        for t in TestDb::all().unwrap() {
            check(t).await;
        }
    }
}
