//! Diesel table definitions, written by hand to column types that SQLite and PostgreSQL share
//! (TEXT, INTEGER, BIGINT, DOUBLE, BOOLEAN; JSON is stored as TEXT), so one schema serves both.

diesel::table! {
    worlds (id) {
        id -> Text,
        title -> Text,
        timezone -> Text,
        jwt_secrets -> Text,
        roles -> Nullable<Text>,
        trait_grants -> Text,
        bbb_defaults -> Text,
        bbb_disable_privatechat -> Bool,
        bbb_style_url -> Nullable<Text>,
        version -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    rooms (world_id, id) {
        world_id -> Text,
        id -> Text,
        name -> Text,
        position -> Integer,
        modules -> Text,
        trait_grants -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        world_id -> Text,
        token_id -> Nullable<Text>,
        client_id -> Nullable<Text>,
        profile -> Text,
        traits -> Text,
        moderation_state -> Text,
        created_at -> BigInt,
        version -> BigInt,
        changed_at -> BigInt,
        token_profile -> Nullable<Text>,
        last_active_at -> BigInt,
    }
}

diesel::table! {
    grants (world_id, uid, room_id, role) {
        world_id -> Text,
        uid -> Text,
        room_id -> Text,
        role -> Text,
    }
}

diesel::table! {
    bbb_servers (id) {
        id -> Integer,
        url -> Text,
        secret -> Text,
        checksum -> Text,
        weight -> Double,
        tag -> Nullable<Text>,
        world_id -> Nullable<Text>,
        state -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        panic_epoch -> BigInt,
        capacity -> Nullable<Integer>,
    }
}

diesel::table! {
    meetings (meeting_key) {
        meeting_key -> Text,
        world_id -> Text,
        room_id -> Nullable<Text>,
        call_id -> Nullable<Text>,
        server_id -> Nullable<Integer>,
        meeting_id -> Text,
        attendee_pw -> Text,
        moderator_pw -> Text,
        create_time -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        callback_issued_at -> Nullable<BigInt>,
        ended_at -> Nullable<BigInt>,
        creating_by -> Nullable<Text>,
        creating_until -> Nullable<BigInt>,
        confirmed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    leader_lease (name) {
        name -> Text,
        instance -> Text,
        expires_at -> BigInt,
        renewed_at -> BigInt,
    }
}

diesel::table! {
    placement_reservations (meeting_id) {
        meeting_id -> Text,
        server_id -> Integer,
        expected -> Integer,
        placed_at -> BigInt,
    }
}

diesel::table! {
    gateway_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    meeting_placements (meeting_id, server_id) {
        meeting_id -> Text,
        server_id -> Integer,
        placed_at -> BigInt,
    }
}

diesel::table! {
    calls (id) {
        id -> Text,
        world_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    call_members (call_id, uid) {
        call_id -> Text,
        uid -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    worlds,
    rooms,
    users,
    grants,
    bbb_servers,
    meetings,
    meeting_placements,
    calls,
    call_members,
);

diesel::table! {
    demo_state (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    bbb_server_status (server_id) {
        server_id -> Integer,
        online -> Bool,
        meetings -> Integer,
        participants -> Integer,
        voice -> Integer,
        videos -> Integer,
        load -> Double,
        consecutive_failures -> Integer,
        polled_at -> BigInt,
        bbb_version -> Nullable<Text>,
        last_error -> Nullable<Text>,
        listeners -> Integer,
        largest_meeting -> Integer,
        occupancy -> Integer,
    }
}

diesel::allow_tables_to_appear_in_same_query!(bbb_server_status, bbb_servers);
