//! Capacity-aware placement end to end: bbb-sim servers with a capacity, a world whose rooms
//! say how many people they expect, joins whose URLs are followed at the simulator (raising its
//! participant counts as BBB would), and the gateway's polls.

use bbb_gateway::bbb::ChecksumAlgorithm;
use bbb_gateway::coordinator::{GetFleetStatus, ServerStatus};
use bbb_gateway::db::servers;
use serde_json::{json, Value};

use crate::fleet::*;
use crate::helpers::*;

/// A conference: a keynote expecting `keynote` people and `breakouts` rooms `b0`… taking the
/// world's default of `breakout`.
fn conference(keynote: u32, breakouts: usize, breakout: u32) -> Value {
    let mut rooms = vec![json!({"id": "keynote", "name": "Keynote",
        "trait_grants": {"viewer": [], "participant": []},
        "modules": [{"type": "call.bigbluebutton", "config": {"expected_participants": keynote}}]})];
    for i in 0..breakouts {
        rooms.push(
            json!({"id": format!("b{i}"), "name": format!("Breakout {i}"),
            "trait_grants": {"viewer": [], "participant": []},
            "modules": [{"type": "call.bigbluebutton", "config": {}}]}),
        );
    }
    json!({
        "id": "conf", "title": "Conference", "timezone": "Europe/Berlin",
        "jwt_secrets": [{"issuer": "any", "audience": "venueless", "secret": WORLD_SECRET}],
        "trait_grants": {"viewer": []},
        "bbb_defaults": {"expected_participants": breakout},
        "rooms": rooms,
    })
}

async fn server_status(app: &TestApp, port: u16) -> ServerStatus {
    let fleet = app.state.coordinator.send(GetFleetStatus).await.unwrap();
    fleet
        .servers
        .into_iter()
        .find(|s| s.url.contains(&format!(":{port}/")))
        .expect("the server of that port")
}

#[actix_web::test]
async fn breakouts_stay_off_the_keynote_server_and_its_crowd_counts_as_it_arrives() {
    let app = spawn_app().await;
    app.import_world(&conference(150, 11, 20)).await;
    let mut sims = Vec::new();
    for i in 1..=3 {
        let (sim, id) = add_sim(&app, i, ChecksumAlgorithm::Sha256).await;
        app.state
            .db
            .run(move |c| servers::set_capacity(c, id, Some(100)))
            .await
            .unwrap();
        sims.push(sim);
    }
    refresh(&app).await;

    let (mut ann, _) = app.ws_as("conf", "ann", &[], Some("Ann")).await;
    let keynote_url = ann.room_url("keynote").await;
    open_join(&keynote_url).await.expect("the keynote opens");
    let keynote_port = port_of(&keynote_url);
    // Ten breakouts of 20: the two other servers take 5 each (100 each), none the keynote's.
    for i in 0..10 {
        let url = ann.room_url(&format!("b{i}")).await;
        open_join(&url).await.expect("the breakout opens");
        assert_ne!(port_of(&url), keynote_port, "breakout {i}");
    }
    let k = server_status(&app, keynote_port).await;
    assert_eq!(
        (k.capacity, k.occupancy, k.headroom),
        (Some(100), 150, Some(-50))
    );
    let status = app.state.coordinator.send(GetFleetStatus).await.unwrap();
    assert_eq!(
        status.stats.placements_over_capacity, 1,
        "the keynote itself"
    );

    // 40 people join the keynote; BBB counts them as they follow their URLs.
    for i in 0..40 {
        let (mut c, _) = app
            .ws_as("conf", &format!("fan{i}"), &[], Some("Fan"))
            .await;
        let url = c.room_url("keynote").await;
        assert_eq!(port_of(&url), keynote_port);
        open_join(&url).await.expect("a keynote join works");
    }
    refresh(&app).await;
    let k = server_status(&app, keynote_port).await;
    // 41 there, but the young keynote still holds its 150 places.
    assert_eq!((k.participants, k.occupancy, k.reserved), (41, 150, 0));
    // The others show what polls saw: 1 participant per breakout, counted at 20 while young.
    for sim in &sims {
        if sim.port() != keynote_port {
            let s = server_status(&app, sim.port()).await;
            assert_eq!(s.occupancy, 20 * u64::from(s.meetings), "{s:?}");
            assert!(s.headroom.is_some_and(|h| h >= 0), "{s:?}");
        }
    }
    // An eleventh finds no room anywhere: it goes to the least full, not the keynote's.
    let url = ann.room_url("b10").await;
    assert_ne!(port_of(&url), keynote_port);
    let status = app.state.coordinator.send(GetFleetStatus).await.unwrap();
    assert_eq!(status.stats.placements_over_capacity, 2);
}
