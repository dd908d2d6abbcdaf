//! `bbb-gateway serve --demo`: a newcomer's one command from clone to a working join URL. Starts
//! an in-process bbb-sim, registers it, seeds a demo world and prints how to use it.

use anyhow::Context;
use bbb_sim::{self as sim, SimConfig};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::json;

use crate::config::Settings;
use crate::startup::{open_database, Application};

/// Tag of the servers the demo registers, so the next demo run replaces them.
const DEMO_TAG: &str = "demo";
pub const DEMO_WORLD: &str = "demo";
pub const DEMO_ROOM: &str = "demo-room";

fn random_string(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The demo world: one BBB room everyone may join; the `moderator` trait moderates.
fn demo_world(jwt_secret: &str) -> serde_json::Value {
    json!({
        "id": DEMO_WORLD, "title": "bbb-gateway demo", "timezone": "UTC",
        "jwt_secrets": [{"issuer": "demo", "audience": "venueless", "secret": jwt_secret}],
        "trait_grants": {"viewer": [], "participant": [], "moderator": ["moderator"]},
        "bbb_defaults": {"record": false},
        "rooms": [
            {"id": DEMO_ROOM, "name": "Demo room",
             "trait_grants": {"viewer": [], "participant": [], "moderator": ["moderator"]},
             "modules": [{"type": "call.bigbluebutton", "config": {"record": true}}]}
        ]
    })
}

/// The demo world's JWT secret: the stored demo world's when there is one (so tokens printed by
/// an earlier start on this database stay valid), a new one otherwise.
fn demo_jwt_secret(conn: &mut crate::db::DbConn) -> anyhow::Result<String> {
    let stored = crate::world::export_world(conn, DEMO_WORLD)?
        .and_then(|w| w.jwt_secrets.into_iter().next())
        .map(|s| s.secret)
        .filter(|s| !s.is_empty());
    Ok(stored.unwrap_or_else(|| random_string(40)))
}

/// Starts the simulator, seeds the database and builds the gateway; prints the demo's guide.
/// The JWT secret, and the admin token when the configuration has none, are generated on the
/// first start and reused on later starts with the same database, so what the demo printed
/// keeps working after a restart.
pub async fn start(mut settings: Settings) -> anyhow::Result<Application> {
    let generate_admin_token = settings.admin.tokens.is_empty();
    let bbb_secret = random_string(40);
    let sim = sim::start(
        "127.0.0.1:0".parse().context("loopback address")?,
        SimConfig {
            secret: bbb_secret.clone(),
            checksum: None,
            latency_ms: 0,
            time_scale: 1.0,
        },
    )
    .await
    .context("cannot start the demo BBB simulator")?;
    let sim_url = sim.base_url();
    let settings_db = settings.clone();
    let (moderator, attendee, generated_admin_token) = actix_web::web::block(
        move || -> anyhow::Result<(String, String, Option<String>)> {
            let db = open_database(&settings_db)?;
            let mut conn = db.get()?;
            let admin_token = if generate_admin_token {
                let token = crate::db::demo_state::get_or_insert(
                    &mut conn,
                    "admin_token",
                    &random_string(32),
                )?;
                Some(token)
            } else {
                None
            };
            let jwt_secret = demo_jwt_secret(&mut conn)?;
            crate::db::servers::remove_by_tag(&mut conn, DEMO_TAG)?;
            crate::db::servers::add(
                &mut conn,
                &crate::db::servers::NewServer {
                    url: sim_url,
                    secret: crate::bbb::Secret::new(bbb_secret),
                    checksum: crate::bbb::ChecksumAlgorithm::Sha256,
                    weight: 1.0,
                    tag: Some(DEMO_TAG.into()),
                    world_id: None,
                    capacity: None,
                },
            )?;
            let file = crate::world::parse_world_file(&demo_world(&jwt_secret).to_string())
                .context("demo world")?;
            crate::world::import_world(&mut conn, &file)?;
            let secret = file.jwt_secrets.first().context("demo world secret")?;
            let moderator = crate::auth::mint_token(
                secret,
                "demo-moderator",
                &["moderator".to_string()],
                Some("Demo Moderator"),
                7 * 86400,
            )?;
            let attendee = crate::auth::mint_token(
                secret,
                "demo-attendee",
                &[],
                Some("Demo Attendee"),
                7 * 86400,
            )?;
            Ok((moderator, attendee, admin_token))
        },
    )
    .await
    .context("demo set-up task failed")??;
    if let Some(token) = generated_admin_token {
        settings.admin.tokens.push(token);
    }
    let admin_token = settings
        .admin
        .tokens
        .first()
        .cloned()
        .context("the demo needs an admin token")?;

    let app = Application::build(settings).await?;
    let port = app.port();
    let admin = format!("http://127.0.0.1:{}", app.admin_port());
    // The simulator lives as long as the gateway.
    actix_web::rt::spawn(async move {
        let _sim = sim;
        std::future::pending::<()>().await;
    });
    let ws = format!("ws://127.0.0.1:{port}/ws/world/{DEMO_WORLD}/");
    println!("bbb-gateway demo is running");
    println!("  websocket:        {ws}");
    println!("  moderator token:  {moderator}");
    println!("  attendee token:   {attendee}");
    println!("  admin token:      {admin_token}");
    println!(
        "  status:           curl -H 'Authorization: Bearer {admin_token}' {admin}/api/v1/status"
    );
    println!("  dashboard:        {admin}/admin/#token={admin_token}");
    println!("  metrics:          {admin}/metrics");
    println!("  ready:            curl http://127.0.0.1:{port}/readyz");
    // The running binary's own path, so the example works without `bbb-gateway` on PATH.
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "bbb-gateway".into());
    println!("  try it:           {exe} client --url {ws} --token {attendee} bbb.room_url '{{\"room\": \"{DEMO_ROOM}\"}}'");
    Ok(app)
}
