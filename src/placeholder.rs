//! The placeholder grammar that `exec` and `render` resolve, compatible with `secrets-init`.
//!
//! ```text
//! awssm:<secret-id>[#<json-key>[#<version>]]        the whole value is one secret
//! awsparam:<name>[#<json-key>[#<version-or-label>]] the whole value is one SSM parameter
//! awsacm:<certificate-arn>#<part>                  an ACM certificate, exported (ours)
//! ...${awssm:<...>}...${awsparam:<...>}...           placeholders inside a longer value
//! ```
//!
//! `<secret-id>` is a name or a full ARN (ARNs contain `:`, which is why `#` separates the
//! parts). `<version>` is a stage when it is `AWSCURRENT`, `AWSPREVIOUS` or `AWSPENDING`, else a
//! version id; none means AWSCURRENT. For a parameter, digits are a version, anything else a
//! label; parameters are always read with decryption (a SecureString's ciphertext is of no use
//! to an application). An empty `<json-key>` means the whole value. An ACM certificate's
//! `<part>` is `certificate`, `chain`, `fullchain` (certificate then chain) or `private_key`
//! (decrypted, unencrypted PKCS#8 PEM); one ExportCertificate serves all four.

use std::fmt;

use crate::backend::Key;

/// The prefix of a whole-value secret placeholder.
pub const SECRET_PREFIX: &str = "awssm:";
/// The prefix of a whole-value SSM parameter placeholder (ours; `secrets-init` has none).
pub const PARAMETER_PREFIX: &str = "awsparam:";
/// The prefix of an ACM certificate placeholder (ours).
pub const CERTIFICATE_PREFIX: &str = "awsacm:";
const PREFIXES: [&str; 3] = [SECRET_PREFIX, PARAMETER_PREFIX, CERTIFICATE_PREFIX];

/// The grammar, as shown with a malformed placeholder.
pub const GRAMMAR: &str =
    "awssm:<secret-id>[#<json-key>[#<version-id|AWSCURRENT|AWSPREVIOUS|AWSPENDING>]], \
awsparam:<name>[#<json-key>[#<version|label>]], \
awsacm:<certificate-arn>#<certificate|chain|fullchain|private_key>, or any of them inside ${...} \
in a longer value";

const STAGES: [&str; 3] = ["AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"];

/// One reference to a value in AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// What to fetch (the cache's key: the same fetch serves every reference to it).
    pub key: Key,
    /// One top-level key of a JSON value; `None` for the whole value.
    pub json_key: Option<String>,
}

impl fmt::Display for Ref {
    /// Names the reference without any value: `secret 'db' key 'password' (AWSPREVIOUS)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.key.kind {
            crate::backend::Kind::Secret => "secret",
            crate::backend::Kind::Parameter => "parameter",
            crate::backend::Kind::Certificate => "certificate",
        };
        write!(f, "{what} '{}'", self.key.id)?;
        if let Some(k) = &self.json_key {
            write!(f, " key '{k}'")?;
        }
        if let Some(v) = self.key.version.as_ref().or(self.key.label.as_ref()) {
            write!(f, " ({v})")?;
        }
        Ok(())
    }
}

/// A value split into literal text and references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Ref(Ref),
}

/// A value that holds at least one placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

/// A placeholder that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed placeholder {placeholder:?}: {why}; expected {GRAMMAR}")]
pub struct GrammarError {
    pub placeholder: String,
    pub why: &'static str,
}

impl Template {
    /// Parses a value: `Ok(None)` when it holds no placeholder.
    pub fn parse(value: &str) -> Result<Option<Template>, GrammarError> {
        for prefix in PREFIXES {
            if let Some(body) = value.strip_prefix(prefix) {
                return Ok(Some(Template(vec![Piece::Ref(parse_ref(prefix, body)?)])));
            }
        }
        let mut pieces = Vec::new();
        let mut rest = value;
        while let Some(start) = find_open(rest) {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let inner = &rest[start + 2..];
            let Some(end) = inner.find('}') else {
                return Err(GrammarError {
                    placeholder: inner.to_string(),
                    why: "no closing '}'",
                });
            };
            let placeholder = &inner[..end];
            let (prefix, body) = PREFIXES
                .iter()
                .find_map(|p| placeholder.strip_prefix(p).map(|b| (*p, b)))
                .expect("find_open only stops at our prefixes");
            pieces.push(Piece::Ref(parse_ref(prefix, body)?));
            rest = &inner[end + 1..];
        }
        if pieces.is_empty() {
            return Ok(None);
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Some(Template(pieces)))
    }

    /// The references, in order of appearance.
    pub fn refs(&self) -> impl Iterator<Item = &Ref> {
        self.0.iter().filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
    }

    /// Joins the pieces, each reference replaced by what `value` gives for it.
    pub fn fill<E>(&self, mut value: impl FnMut(&Ref) -> Result<String, E>) -> Result<String, E> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Ref(r) => out.push_str(&value(r)?),
            }
        }
        Ok(out)
    }
}

/// Where the next `${awssm:`, `${awsparam:` or `${awsacm:` starts.
fn find_open(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("${") {
        let at = from + i;
        let after = &s[at + 2..];
        if PREFIXES.iter().any(|p| after.starts_with(p)) {
            return Some(at);
        }
        from = at + 2;
    }
    None
}

fn parse_ref(prefix: &str, body: &str) -> Result<Ref, GrammarError> {
    let bad = |why| GrammarError {
        placeholder: format!("{prefix}{body}"),
        why,
    };
    let mut parts = body.split('#');
    let id = parts.next().unwrap_or_default();
    let json_key = parts.next().filter(|k| !k.is_empty()).map(str::to_string);
    let version = parts.next().filter(|v| !v.is_empty()).map(str::to_string);
    if parts.next().is_some() {
        return Err(bad("more than three '#'-separated parts"));
    }
    if id.is_empty() {
        return Err(bad("the id is empty"));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the id contains white space or a control character"));
    }
    if prefix == CERTIFICATE_PREFIX {
        if !id.starts_with("arn:") || !id.contains(":acm:") {
            return Err(bad(
                "an ACM certificate is named by its ARN (arn:aws:acm:...)",
            ));
        }
        if version.is_some() {
            return Err(bad("a certificate reference has no version part"));
        }
        return match json_key {
            Some(part) if crate::backend::acm::PARTS.contains(&part.as_str()) => Ok(Ref {
                key: Key::certificate(id),
                json_key: Some(part),
            }),
            _ => Err(bad(
                "a certificate reference needs #certificate, #chain, #fullchain or #private_key",
            )),
        };
    }
    let key = if prefix == SECRET_PREFIX {
        match version {
            Some(v) if STAGES.contains(&v.as_str()) => Key::secret(id, None, Some(v)),
            v => Key::secret(id, v, None),
        }
    } else {
        match version {
            Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => {
                Key::parameter(id, Some(v), None, true)
            }
            v => Key::parameter(id, None, v, true),
        }
    };
    Ok(Ref { key, json_key })
}

/// Why a fetched value could not fill a reference. No variant carries any part of a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("key '{0}' is not in the secret")]
    KeyMissing(String),
    #[error("the value is not a JSON object, so key '{0}' cannot be taken from it")]
    NotAnObject(String),
    #[error("the secret is binary and not UTF-8 text")]
    BinaryNotText,
    #[error("the answer could not be read: {0}")]
    Malformed(&'static str),
}

/// The text a reference stands for, from the agent's JSON answer body for its key (the same
/// body whether it came through a running agent or straight from AWS).
///
/// A JSON string is used as is; a number, boolean or null as its JSON text; an object or array
/// as compact JSON. A SecretBinary is used when it is UTF-8 text, refused otherwise.
pub fn extract(r: &Ref, body: &[u8]) -> Result<String, ExtractError> {
    if r.key.kind == crate::backend::Kind::Certificate {
        return certificate_part(r, body);
    }
    let whole =
        String::from_utf8(whole_value(r, body)?).map_err(|_| ExtractError::BinaryNotText)?;
    let Some(k) = &r.json_key else {
        return Ok(whole);
    };
    let parsed: serde_json::Value =
        serde_json::from_str(&whole).map_err(|_| ExtractError::NotAnObject(k.clone()))?;
    let object = parsed
        .as_object()
        .ok_or_else(|| ExtractError::NotAnObject(k.clone()))?;
    match object.get(k) {
        None => Err(ExtractError::KeyMissing(k.clone())),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
    }
}

/// The bytes a reference stands for: as `extract`, except that a whole SecretBinary is its
/// decoded bytes, text or not (a file can hold a keystore; an environment variable cannot).
pub fn extract_bytes(r: &Ref, body: &[u8]) -> Result<Vec<u8>, ExtractError> {
    match r.json_key {
        None => whole_value(r, body),
        Some(_) => extract(r, body).map(String::into_bytes),
    }
}

/// One part of an exported certificate.
fn certificate_part(r: &Ref, body: &[u8]) -> Result<String, ExtractError> {
    let cert: crate::backend::acm::CertificateBody =
        serde_json::from_slice(body).map_err(|_| ExtractError::Malformed("not a certificate"))?;
    let part = r.json_key.as_deref().unwrap_or_default();
    cert.part(part)
        .ok_or_else(|| ExtractError::KeyMissing(part.to_string()))
}

/// SecretString, the decoded SecretBinary, or the parameter's Value.
fn whole_value(r: &Ref, body: &[u8]) -> Result<Vec<u8>, ExtractError> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ExtractError::Malformed("not JSON"))?;
    match r.key.kind {
        crate::backend::Kind::Secret => {
            if let Some(s) = answer.get("SecretString").and_then(|v| v.as_str()) {
                Ok(s.as_bytes().to_vec())
            } else if let Some(b) = answer.get("SecretBinary").and_then(|v| v.as_str()) {
                aws_smithy_types::base64::decode(b)
                    .map_err(|_| ExtractError::Malformed("SecretBinary is not base64"))
            } else {
                Err(ExtractError::Malformed("no SecretString or SecretBinary"))
            }
        }
        crate::backend::Kind::Parameter => answer
            .pointer("/Parameter/Value")
            .and_then(|v| v.as_str())
            .map(|v| v.as_bytes().to_vec())
            .ok_or(ExtractError::Malformed("no Parameter.Value")),
        // Taken by `extract`, which every certificate reference goes through (it has a part).
        crate::backend::Kind::Certificate => Err(ExtractError::Malformed("a certificate")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(id: &str, key: Option<&str>, version: Option<&str>, stage: Option<&str>) -> Piece {
        Piece::Ref(Ref {
            key: Key::secret(id, version.map(Into::into), stage.map(Into::into)),
            json_key: key.map(Into::into),
        })
    }

    fn text(s: &str) -> Piece {
        Piece::Text(s.into())
    }

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf";

    #[test]
    fn grammar_table() {
        let param = |name: &str, key: Option<&str>, v: Option<&str>, l: Option<&str>| {
            Piece::Ref(Ref {
                key: Key::parameter(name, v.map(Into::into), l.map(Into::into), true),
                json_key: key.map(Into::into),
            })
        };
        let cases: Vec<(&str, Option<Vec<Piece>>)> = vec![
            ("plain", None),
            ("", None),
            ("cost: $5 ${HOME}", None),
            ("awssm:db", Some(vec![secret("db", None, None, None)])),
            (
                "awssm:db#password",
                Some(vec![secret("db", Some("password"), None, None)]),
            ),
            (
                "awssm:db##AWSPREVIOUS",
                Some(vec![secret("db", None, None, Some("AWSPREVIOUS"))]),
            ),
            (
                "awssm:db#k#AWSCURRENT",
                Some(vec![secret("db", Some("k"), None, None)]),
            ),
            (
                "awssm:db#k#AWSPENDING",
                Some(vec![secret("db", Some("k"), None, Some("AWSPENDING"))]),
            ),
            (
                "awssm:db#k#v-1234",
                Some(vec![secret("db", Some("k"), Some("v-1234"), None)]),
            ),
            (
                "awssm:arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf#user",
                Some(vec![secret(ARN, Some("user"), None, None)]),
            ),
            (
                "postgres://${awssm:db#user}:${awssm:other#password}@host/db",
                Some(vec![
                    text("postgres://"),
                    secret("db", Some("user"), None, None),
                    text(":"),
                    secret("other", Some("password"), None, None),
                    text("@host/db"),
                ]),
            ),
            ("${awssm:db}", Some(vec![secret("db", None, None, None)])),
            (
                "$${awssm:db}x",
                Some(vec![text("$"), secret("db", None, None, None), text("x")]),
            ),
            (
                "awsparam:/app/flag",
                Some(vec![param("/app/flag", None, None, None)]),
            ),
            (
                "awsparam:/app/cfg#url#3",
                Some(vec![param("/app/cfg", Some("url"), Some("3"), None)]),
            ),
            (
                "awsparam:/app/cfg##prod",
                Some(vec![param("/app/cfg", None, None, Some("prod"))]),
            ),
            (
                "x=${awsparam:/a/b}&y=${awssm:s#k}",
                Some(vec![
                    text("x="),
                    param("/a/b", None, None, None),
                    text("&y="),
                    secret("s", Some("k"), None, None),
                ]),
            ),
        ];
        for (input, want) in cases {
            let got = Template::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.map(|t| t.0), want, "{input}");
        }
    }

    #[test]
    fn malformed_placeholders_say_why_and_show_the_grammar() {
        for (input, why) in [
            ("awssm:", "the id is empty"),
            ("awssm:#key", "the id is empty"),
            ("awssm:a#b#c#d", "more than three"),
            ("awssm:a b", "white space"),
            ("awsparam:", "the id is empty"),
            ("url=${awssm:db", "no closing"),
            ("url=${awssm:}", "the id is empty"),
            ("awsacm:my-cert#certificate", "named by its ARN"),
            (
                "awsacm:arn:aws:acm:us-east-1:1:certificate/x",
                "needs #certificate",
            ),
            (
                "awsacm:arn:aws:acm:us-east-1:1:certificate/x#key",
                "needs #certificate",
            ),
            (
                "awsacm:arn:aws:acm:us-east-1:1:certificate/x#chain#1",
                "no version part",
            ),
        ] {
            let e = Template::parse(input).expect_err(input);
            let text = e.to_string();
            assert!(text.contains(why), "{input}: {text}");
            assert!(text.contains("expected awssm:<secret-id>"), "{text}");
        }
    }

    /// One certificate key serves every part; parts are taken from its exported body.
    #[test]
    fn certificate_references_share_one_key() {
        let arn = "arn:aws:acm:us-east-1:1:certificate/x";
        let t = Template::parse(&format!(
            "${{awsacm:{arn}#fullchain}}${{awsacm:{arn}#private_key}}"
        ))
        .unwrap()
        .unwrap();
        let refs: Vec<&Ref> = t.refs().collect();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].key, Key::certificate(arn));
        assert_eq!(refs[0].key, refs[1].key);
        assert_eq!(
            refs[0].to_string(),
            format!("certificate '{arn}' key 'fullchain'")
        );
        let body = crate::backend::acm::CertificateBody {
            certificate_arn: arn.into(),
            serial: Some("1".into()),
            certificate: "C".into(),
            certificate_chain: "CH".into(),
            private_key: "K".into(),
        }
        .to_bytes();
        assert_eq!(extract(refs[0], &body).unwrap(), "C\nCH\n");
        assert_eq!(extract_bytes(refs[1], &body).unwrap(), b"K\n");
    }

    #[test]
    fn fill_joins_text_and_values() {
        let t = Template::parse("a=${awssm:x#k}, b=${awssm:y}")
            .unwrap()
            .unwrap();
        let out: Result<String, ()> = t.fill(|r| Ok(format!("<{}>", r.key.id)));
        assert_eq!(out.unwrap(), "a=<x>, b=<y>");
        assert_eq!(t.refs().count(), 2);
    }

    #[test]
    fn extract_table() {
        let r = |key: Option<&str>| Ref {
            key: Key::secret("s", None, None),
            json_key: key.map(Into::into),
        };
        let body = serde_json::json!({
            "Name": "s",
            "SecretString": r#"{"user":"u","port":5432,"tls":true,"none":null,"o":{"a":[1,"b"]}}"#,
        })
        .to_string();
        let ok = |k: Option<&str>, want: &str| {
            assert_eq!(extract(&r(k), body.as_bytes()).unwrap(), want, "{k:?}");
        };
        ok(Some("user"), "u");
        ok(Some("port"), "5432");
        ok(Some("tls"), "true");
        ok(Some("none"), "null");
        ok(Some("o"), r#"{"a":[1,"b"]}"#);
        ok(
            None,
            r#"{"user":"u","port":5432,"tls":true,"none":null,"o":{"a":[1,"b"]}}"#,
        );
        assert_eq!(
            extract(&r(Some("missing")), body.as_bytes()),
            Err(ExtractError::KeyMissing("missing".into()))
        );
        let plain = serde_json::json!({"SecretString": "not json"}).to_string();
        assert_eq!(
            extract(&r(Some("k")), plain.as_bytes()),
            Err(ExtractError::NotAnObject("k".into()))
        );
        let binary = serde_json::json!({"SecretBinary": "aGVsbG8="}).to_string();
        assert_eq!(extract(&r(None), binary.as_bytes()).unwrap(), "hello");
        let not_text = serde_json::json!({"SecretBinary": "/w=="}).to_string();
        assert_eq!(
            extract(&r(None), not_text.as_bytes()),
            Err(ExtractError::BinaryNotText)
        );
        assert_eq!(
            extract_bytes(&r(None), not_text.as_bytes()).unwrap(),
            [0xff]
        );
        assert_eq!(
            extract_bytes(&r(Some("user")), body.as_bytes()).unwrap(),
            b"u"
        );
        let p = Ref {
            key: Key::parameter("/p", None, None, true),
            json_key: None,
        };
        let param = serde_json::json!({"Parameter": {"Name": "/p", "Value": "v"}}).to_string();
        assert_eq!(extract(&p, param.as_bytes()).unwrap(), "v");
    }
}
