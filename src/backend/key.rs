//! What is cached: a key per service, id, version, stage, decryption and role, and the same key
//! borrowed from a request so a hit needs no copy.

use std::sync::Arc;

/// Which service a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Secret,
    Parameter,
    /// An ACM certificate with its chain and private key (`render`'s `awsacm:` sources).
    Certificate,
}

/// What is cached: one answer of one service for one selector. Hashed by kind and id only
/// ([`hash_key`]); equality compares every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kind: Kind,
    /// Secret id (name or ARN) or parameter name (name or ARN).
    pub id: String,
    /// `versionId` of a secret, `version` of a parameter.
    pub version: Option<String>,
    /// `versionStage` of a secret, `label` of a parameter.
    pub label: Option<String>,
    /// `withDecryption` (parameters only).
    pub decrypt: bool,
    /// `roleArn`: read as this role (assumed with STS); `None` is the agent's own.
    pub role: Option<Arc<str>>,
}

impl Key {
    /// A secret key; no stage and `AWSCURRENT` are the same entry.
    pub fn secret(id: impl Into<String>, version: Option<String>, stage: Option<String>) -> Self {
        let stage = match (&version, stage) {
            (None, Some(s)) if s == "AWSCURRENT" => None,
            (_, s) => s,
        };
        Key {
            kind: Kind::Secret,
            id: id.into(),
            version,
            label: stage,
            decrypt: false,
            role: None,
        }
    }

    /// The same key, read as `role` (`None`: the agent's own credentials).
    pub fn with_role(mut self, role: Option<Arc<str>>) -> Self {
        self.role = role;
        self
    }

    /// The stage to send to AWS: the key's, or AWSCURRENT when it names neither a stage nor a
    /// version. AWS reads AWSCURRENT without one, but AWS-compatible backends (moto among
    /// them) answer a stageless call with a version that AWSCURRENT has since left.
    pub(super) fn wire_stage(&self) -> Option<String> {
        match (&self.version, &self.label) {
            (None, None) => Some("AWSCURRENT".into()),
            (_, label) => label.clone(),
        }
    }

    /// An ACM certificate by its ARN.
    pub fn certificate(arn: impl Into<String>) -> Self {
        Key {
            kind: Kind::Certificate,
            id: arn.into(),
            version: None,
            label: None,
            decrypt: false,
            role: None,
        }
    }

    pub fn parameter(
        name: impl Into<String>,
        version: Option<String>,
        label: Option<String>,
        decrypt: bool,
    ) -> Self {
        Key {
            kind: Kind::Parameter,
            id: name.into(),
            version,
            label,
            decrypt,
            role: None,
        }
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_key(self.kind, &self.id, state);
    }
}

/// The hash of a [`Key`] and of a [`KeyRef`]: kind and id. Versions, stages and roles of one id
/// are few, so leaving them out costs nothing in collisions, and a hit hashes about 20 bytes
/// instead of 50.
fn hash_key<H: std::hash::Hasher>(kind: Kind, id: &str, state: &mut H) {
    state.write_u8(kind as u8);
    state.write(id.as_bytes());
}

/// A [`Key`] borrowed from a request, so that a cache hit finds its entry without copying the
/// id. It hashes and compares exactly as the `Key` it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef<'a> {
    pub kind: Kind,
    pub id: &'a str,
    pub version: Option<&'a str>,
    pub label: Option<&'a str>,
    pub decrypt: bool,
    pub role: Option<&'a str>,
}

impl<'a> KeyRef<'a> {
    /// The AWSCURRENT version of secret `id`, read with the agent's own credentials (what
    /// `Key::secret(id, None, None)` is).
    pub fn current_secret(id: &'a str) -> Self {
        KeyRef {
            kind: Kind::Secret,
            id,
            version: None,
            label: None,
            decrypt: false,
            role: None,
        }
    }
}

impl std::hash::Hash for KeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_key(self.kind, self.id, state);
    }
}

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.kind == key.kind
            && self.id == key.id
            && self.version == key.version.as_deref()
            && self.label == key.label.as_deref()
            && self.decrypt == key.decrypt
            && self.role == key.role.as_deref()
    }
}
