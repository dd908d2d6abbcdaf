//! A user's profile in two forms: the whole JSON object the frontend stored
//! ([`ProfileDocument`], returned unchanged in `authenticated`), and what joins read from it
//! ([`Profile`]: display name and avatar URL), derived once when the document is loaded or
//! replaced, so no join parses JSON. A leaf module: storage and sessions both use it.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Largest stored profile, serialised (compact JSON).
pub const MAX_PROFILE_BYTES: usize = 8 * 1024;

/// Longest accepted display name; BBB shows it in a narrow user list.
pub const MAX_DISPLAY_NAME: usize = 200;

/// Longest avatar URL handed to BBB.
const MAX_AVATAR_URL: usize = 2048;

/// The whole profile object of a user (`display_name`, `avatar`, `greeted`, `fields`, …),
/// serialised once. The frontend relies on getting back exactly what it stored: without
/// `greeted` it greets the user again and unmounts the video call.
#[derive(Debug, Clone)]
pub struct ProfileDocument(Box<RawValue>);

impl PartialEq for ProfileDocument {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Default for ProfileDocument {
    fn default() -> Self {
        ProfileDocument::from_map(&Map::new())
    }
}

/// Why a profile object cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("the profile must be a JSON object")]
    NotAnObject,
    #[error("the profile is too large (8 KiB at most)")]
    TooLarge,
    #[error("profile.display_name must be a string")]
    NameNotAString,
    #[error("profile.display_name is too long (200 characters at most)")]
    NameTooLong,
}

impl ProfileDocument {
    /// Checks a profile object from a client: an object of at most [`MAX_PROFILE_BYTES`]
    /// whose `display_name`, when present, is a string of at most [`MAX_DISPLAY_NAME`]
    /// characters. Returns the document and what joins need from it.
    pub fn from_client(v: &Value) -> Result<(ProfileDocument, Profile), ProfileError> {
        let map = v.as_object().ok_or(ProfileError::NotAnObject)?;
        match map.get("display_name") {
            None | Some(Value::Null) => {}
            Some(Value::String(name)) if name.chars().count() > MAX_DISPLAY_NAME => {
                return Err(ProfileError::NameTooLong)
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(ProfileError::NameNotAString),
        }
        let doc = ProfileDocument::bounded(map).ok_or(ProfileError::TooLarge)?;
        Ok((doc, Profile::from_json(v)))
    }

    /// The document of `map` when it fits in [`MAX_PROFILE_BYTES`].
    pub fn bounded(map: &Map<String, Value>) -> Option<ProfileDocument> {
        let doc = ProfileDocument::from_map(map);
        (doc.as_str().len() <= MAX_PROFILE_BYTES).then_some(doc)
    }

    fn from_map(map: &Map<String, Value>) -> ProfileDocument {
        // Serialising a JSON map cannot fail, and its output is valid JSON.
        let text = serde_json::to_string(map).unwrap_or_else(|_| "{}".into());
        ProfileDocument(RawValue::from_string(text).unwrap_or_else(|_| empty_raw()))
    }

    /// Reads a stored profile (database text) with what joins need from it; anything that is
    /// not a JSON object reads as `{}`.
    pub fn load(text: &str) -> (ProfileDocument, Profile) {
        match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => {
                let profile = Profile::from_json(&v);
                let doc = match RawValue::from_string(text.trim().to_owned()) {
                    Ok(raw) => ProfileDocument(raw),
                    Err(_) => ProfileDocument::default(),
                };
                (doc, profile)
            }
            _ => (ProfileDocument::default(), Profile::default()),
        }
    }

    /// The document as JSON text, as stored in the database.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

fn empty_raw() -> Box<RawValue> {
    // "{}" is valid JSON; the fallback is never reached.
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

impl Serialize for ProfileDocument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// What joins need from a profile: display name and avatar URL, read from the document once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub display_name: Option<String>,
    /// `avatar.url` when it is an http(s) URL BBB can show; other avatars (the frontend's
    /// identicons) are not for BBB.
    pub avatar_url: Option<String>,
}

impl Profile {
    /// Reads the venueless profile object (`display_name`, `avatar.url`), ignoring other keys.
    pub fn from_json(v: &Value) -> Profile {
        Profile {
            display_name: v
                .get("display_name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            avatar_url: v
                .get("avatar")
                .and_then(|a| a.get("url"))
                .and_then(Value::as_str)
                .filter(|u| {
                    u.len() <= MAX_AVATAR_URL
                        && (u.starts_with("https://") || u.starts_with("http://"))
                })
                .map(str::to_owned),
        }
    }

    /// The display name when it is usable for BBB (not missing, empty or whitespace).
    pub fn usable_name(&self) -> Option<&str> {
        self.display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stored_profiles_load_whole_and_anything_else_reads_as_empty() {
        let text = r#"{"display_name":"Ada","greeted":true,"avatar":{"url":"https://a/x.png"}}"#;
        let (doc, profile) = ProfileDocument::load(text);
        assert_eq!(doc.as_str(), text);
        assert_eq!(profile.usable_name(), Some("Ada"));
        assert_eq!(profile.avatar_url.as_deref(), Some("https://a/x.png"));
        for bad in ["", "null", "[1]", "\"x\"", "{not json"] {
            let (doc, profile) = ProfileDocument::load(bad);
            assert_eq!(doc.as_str(), "{}", "{bad:?}");
            assert_eq!(profile, Profile::default(), "{bad:?}");
        }
    }

    #[test]
    fn the_document_serialises_as_it_was_stored() {
        let (doc, _) = ProfileDocument::from_client(&json!({"b": 1, "a": [true, null]})).unwrap();
        assert_eq!(
            serde_json::to_string(&("user", &doc)).unwrap(),
            format!(r#"["user",{}]"#, doc.as_str())
        );
        assert_eq!(
            serde_json::from_str::<Value>(doc.as_str()).unwrap(),
            json!({"a": [true, null], "b": 1})
        );
    }
}
