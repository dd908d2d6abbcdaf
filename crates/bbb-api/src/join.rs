//! Signed `join` URLs, the answer to every join. A URL is a meeting half (meeting id, role and
//! password, createTime, guest, the room's client settings), the same for everyone joining a
//! meeting in a role, then a user half (name, id, avatar). [`JoinPrefix`] encodes and hashes
//! the meeting half once; each join copies it, adds its user half and finishes the checksum
//! from the saved hash state. BBB does not care about the order of parameters; this one makes
//! the shared part come first.

use super::checksum::{push_pair, HashState};
use super::types::{JoinParams, Role, Secret, ServerEndpoint};

/// The meeting half of a join URL for one meeting, role and set of client settings, encoded
/// and hashed.
#[derive(Clone)]
pub struct JoinPrefix {
    /// `{base}/api/join?meetingID=…&…` (the meeting half, encoded).
    url: String,
    query_start: usize,
    /// The checksum state after `join` and the meeting half.
    hash: HashState,
    // What the meeting half was built from, so a cached prefix is only reused when it fits.
    base_url: String,
    meeting_id: String,
    role: Role,
    password: Option<String>,
    create_time: Option<i64>,
    guest: bool,
    extra: Vec<(String, String)>,
}

impl JoinPrefix {
    /// Encodes and hashes the meeting half of `p` for `endpoint`.
    pub fn new(endpoint: &ServerEndpoint, p: &JoinParams<'_>) -> Self {
        let (url, query_start, hash) = meeting_half(endpoint, p);
        JoinPrefix {
            url,
            query_start,
            hash,
            base_url: endpoint.base_url.clone(),
            meeting_id: p.meeting_id.to_string(),
            role: p.role,
            password: p.password.map(str::to_string),
            create_time: p.create_time,
            guest: p.guest,
            extra: p
                .extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Whether this prefix is the meeting half of `p` on `endpoint`.
    pub fn fits(&self, endpoint: &ServerEndpoint, p: &JoinParams<'_>) -> bool {
        self.meeting_id == p.meeting_id
            && self.role == p.role
            && self.password.as_deref() == p.password
            && self.create_time == p.create_time
            && self.guest == p.guest
            && self.extra.len() == p.extra.len()
            && self
                .extra
                .iter()
                .zip(&p.extra)
                .all(|((k, v), (pk, pv))| k == pk && v == pv)
            && self.base_url == endpoint.base_url
    }

    /// The whole signed URL: this meeting half, then `p`'s user half, then the checksum.
    pub fn sign(&self, p: &JoinParams<'_>, secret: &Secret) -> String {
        let mut url = String::with_capacity(self.url.len() + 256);
        url.push_str(&self.url);
        user_half_and_checksum(url, self.query_start, self.hash.clone(), p, secret)
    }
}

/// `{base}/api/join?` and the encoded meeting half of `p`, where the query starts, and the
/// checksum state after it.
fn meeting_half(endpoint: &ServerEndpoint, p: &JoinParams<'_>) -> (String, usize, HashState) {
    let mut url = String::with_capacity(endpoint.base_url.len() + 768);
    url.push_str(&endpoint.base_url);
    url.push_str("/api/join?");
    let start = url.len();
    let mut pair = |k: &str, v: &str| push_pair(&mut url, start, k, v);
    pair("meetingID", p.meeting_id);
    pair("role", p.role.as_str());
    if let Some(pw) = p.password {
        pair("password", pw);
    }
    if let Some(t) = p.create_time {
        pair("createTime", itoa::Buffer::new().format(t));
    }
    if p.guest {
        pair("guest", "true");
    }
    for (k, v) in &p.extra {
        pair(k, v);
    }
    let mut hash = HashState::start(endpoint.algorithm, "join");
    hash.update(url.as_bytes().get(start..).unwrap_or_default());
    (url, start, hash)
}

/// Appends the user half of `p` to a URL holding the meeting half, then the checksum.
fn user_half_and_checksum(
    mut url: String,
    query_start: usize,
    mut hash: HashState,
    p: &JoinParams<'_>,
    secret: &Secret,
) -> String {
    let user_start = url.len();
    let mut pair = |k: &str, v: &str| push_pair(&mut url, query_start, k, v);
    pair("fullName", p.full_name);
    pair("userID", p.user_id);
    if let Some(a) = p.avatar_url {
        pair("avatarURL", a);
    }
    hash.update(url.as_bytes().get(user_start..).unwrap_or_default());
    url.push_str("&checksum=");
    hash.finish_into(secret, &mut url);
    url
}

/// A signed `join` URL for the browser (the same bytes as a [`JoinPrefix`] gives).
pub fn join_url(endpoint: &ServerEndpoint, p: &JoinParams<'_>) -> String {
    let (url, query_start, hash) = meeting_half(endpoint, p);
    user_half_and_checksum(url, query_start, hash, p, &endpoint.secret)
}

#[cfg(test)]
mod tests {
    use super::super::checksum::{split_checksum, verify};
    use super::super::types::ChecksumAlgorithm;
    use super::*;

    fn ep() -> ServerEndpoint {
        ServerEndpoint {
            base_url: "https://bbb1.example.org/bigbluebutton".into(),
            secret: Secret::new("s3cret"),
            algorithm: ChecksumAlgorithm::Sha256,
        }
    }

    fn params() -> JoinParams<'static> {
        JoinParams {
            meeting_id: "room 1",
            full_name: "Ada Lovelace",
            user_id: "u1",
            role: Role::Moderator,
            password: Some("mp"),
            create_time: Some(42),
            avatar_url: Some("https://a/x.png"),
            guest: false,
            extra: vec![("userdata-bbb_auto_join_audio", "true")],
        }
    }

    #[test]
    fn join_url_order_and_signature() {
        let url = join_url(&ep(), &params());
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://bbb1.example.org/bigbluebutton/api/join");
        let (q, sum) = split_checksum(query);
        assert_eq!(
            q,
            "meetingID=room+1&role=MODERATOR&password=mp&createTime=42\
             &userdata-bbb_auto_join_audio=true&fullName=Ada+Lovelace&userID=u1\
             &avatarURL=https%3A%2F%2Fa%2Fx.png"
        );
        for algorithm in ChecksumAlgorithm::ALL {
            let e = ServerEndpoint { algorithm, ..ep() };
            let url = join_url(&e, &params());
            let (q, sum) = split_checksum(url.split_once('?').unwrap().1);
            assert!(
                verify("join", &q, &sum.unwrap(), &e.secret, &[algorithm]),
                "{algorithm:?}"
            );
        }
        assert!(verify(
            "join",
            &q,
            &sum.unwrap(),
            &Secret::new("s3cret"),
            &ChecksumAlgorithm::ALL
        ));

        let guest = JoinParams {
            password: None,
            create_time: None,
            avatar_url: None,
            guest: true,
            extra: vec![],
            role: Role::Viewer,
            ..params()
        };
        let url = join_url(&ep(), &guest);
        assert!(url.contains(
            "?meetingID=room+1&role=VIEWER&guest=true&fullName=Ada+Lovelace&userID=u1&checksum="
        ));
    }

    #[test]
    fn a_prefix_signs_every_user_like_a_fresh_url_and_fits_only_its_meeting_half() {
        let p = params();
        let prefix = JoinPrefix::new(&ep(), &p);
        for (name, id, avatar) in [
            ("Bob", "u2", None),
            ("Çağla & \"Q\"", "u3", Some("https://x/ü.png")),
        ] {
            let other = JoinParams {
                full_name: name,
                user_id: id,
                avatar_url: avatar,
                ..params()
            };
            assert!(prefix.fits(&ep(), &other));
            assert_eq!(prefix.sign(&other, &ep().secret), join_url(&ep(), &other));
        }
        let changes: [JoinParams<'static>; 7] = [
            JoinParams {
                meeting_id: "room 2",
                ..params()
            },
            JoinParams {
                role: Role::Viewer,
                ..params()
            },
            JoinParams {
                password: Some("ap"),
                ..params()
            },
            JoinParams {
                create_time: Some(43),
                ..params()
            },
            JoinParams {
                guest: true,
                ..params()
            },
            JoinParams {
                extra: vec![("userdata-bbb_auto_join_audio", "false")],
                ..params()
            },
            JoinParams {
                extra: vec![],
                ..params()
            },
        ];
        for changed in &changes {
            assert!(!prefix.fits(&ep(), changed), "{changed:?}");
        }
        let moved = ServerEndpoint {
            base_url: "https://bbb2.example.org/bigbluebutton".into(),
            ..ep()
        };
        assert!(!prefix.fits(&moved, &p));
    }
}
