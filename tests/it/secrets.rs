//! JWT secrets shorter than world import accepts today: a world stored before the rule keeps
//! working (start-up only warns), and re-importing it needs longer secrets.

use bbb_gateway::db::DbConn;
use diesel::connection::SimpleConnection;
use serde_json::json;

use crate::helpers::{sample_world, spawn_app};

const SHORT: &str = "short-old-secret";

#[actix_web::test]
async fn a_stored_short_secret_keeps_working() {
    let app = spawn_app().await;
    app.import_world(&sample_world("old")).await;
    // As a world imported before the rule would be stored.
    let secrets = json!([{"issuer": "any", "audience": "venueless", "secret": SHORT}]).to_string();
    let sql = format!(
        "UPDATE worlds SET jwt_secrets = '{secrets}', version = version + 1 WHERE id = 'old'"
    );
    app.state
        .db
        .run(move |conn| {
            match conn {
                DbConn::Sqlite(c) => c.batch_execute(&sql)?,
                DbConn::Postgres(c) => c.batch_execute(&sql)?,
            }
            Ok(())
        })
        .await
        .expect("stored");
    app.state.worlds.refresh().await.expect("refresh");
    let short = app
        .state
        .db
        .run(bbb_gateway::world::worlds_with_short_secrets)
        .await
        .expect("checked");
    assert_eq!(short, vec![("old".to_owned(), 1)]);

    let secret = bbb_gateway::world::JwtSecret {
        issuer: "any".into(),
        audience: "venueless".into(),
        secret: SHORT.into(),
    };
    let token =
        bbb_gateway::auth::mint_token(&secret, "veteran", &[], Some("Vet"), 600).expect("minted");
    let mut c = app.ws("old").await;
    c.send(json!(["authenticate", {"token": token}])).await;
    let reply = c.recv().await.expect("a reply");
    assert_eq!(reply[0], "authenticated", "{reply}");

    // Exported and imported again as it is: refused, naming the secret's path.
    let exported = app
        .state
        .db
        .run(|conn| bbb_gateway::world::export_world(conn, "old"))
        .await
        .expect("exported")
        .expect("the world");
    let text = serde_json::to_string(&exported).expect("JSON");
    let err = bbb_gateway::world::parse_world_file(&text).expect_err("too short");
    assert_eq!(err.path, "jwt_secrets[0].secret");
    assert!(!err.to_string().contains(SHORT), "{err}");
}
