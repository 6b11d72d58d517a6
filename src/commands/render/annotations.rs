//! File specs from Kubernetes pod annotations, as the downward API writes them to a file
//! (`downwardAPI.items[].fieldRef.fieldPath: metadata.annotations`): one `key="value"` line per
//! annotation, the value quoted as Go's `%q` does.
//!
//! Our keys, one group per file `<name>` (letters, digits, `-` and `_`):
//!
//! ```text
//! secrets-agent.io/file.<name>.path     absolute target path (required)
//! secrets-agent.io/file.<name>.source   awssm:/awsparam: placeholder, or text with ${...} (required)
//! secrets-agent.io/file.<name>.mode     octal mode (default 0400)
//! secrets-agent.io/file.<name>.uid      numeric owner
//! secrets-agent.io/file.<name>.gid      numeric group
//! secrets-agent.io/file.<name>          short for .source, with the path <files-path>/<name>
//! secrets-agent.io/files-path           the folder of the short form (default /run/secrets/app)
//! ```
//!
//! Other keys under `secrets-agent.io/` (`inject`, `mode`, ...) belong to the webhook and are
//! ignored here; other prefixes are not ours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::files::path_problem;
use crate::config::{parse_file_mode, FileContent, FileEntry, DEFAULT_FILE_MODE};

/// Our annotation prefix.
pub const PREFIX: &str = "secrets-agent.io/";
const FILE: &str = "file.";
/// The attributes of a file's long form, `file.<name>.<attribute>`.
pub const ATTRIBUTES: [&str; 5] = ["path", "source", "mode", "uid", "gid"];
const FILES_PATH: &str = "files-path";
/// Where the short form's files go when no `files-path` annotation says otherwise.
pub const DEFAULT_FILES_PATH: &str = "/run/secrets/app";

/// The file entries in a downward-API annotations file, by name, or every problem found.
pub fn entries(text: &str) -> Result<Vec<(String, FileEntry)>, Vec<String>> {
    let mut problems = Vec::new();
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, quoted)) = line.split_once('=') else {
            problems.push(format!("line {}: not key=\"value\"", n + 1));
            continue;
        };
        if !key.starts_with(PREFIX) {
            continue;
        }
        match unquote(quoted) {
            Some(value) => pairs.push((key.to_string(), value)),
            None => problems.push(format!(
                "{key}: the value is not a Go-quoted string as the downward API writes it"
            )),
        }
    }
    match entries_from(pairs) {
        Ok(found) if problems.is_empty() => Ok(found),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

/// The file entries of a pod's annotations, as (key, value) pairs: what `entries` reads from
/// the downward API's file, and what the webhook checks at admission, so a pod admitted is a
/// pod whose files render.
pub fn entries_from(
    pairs: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, FileEntry)>, Vec<String>> {
    let (out, problems) = entries_and_problems(pairs);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The entries that are sound, and the problems of the others (the webhook reports them all).
pub fn entries_and_problems(
    pairs: impl IntoIterator<Item = (String, String)>,
) -> (Vec<(String, FileEntry)>, Vec<String>) {
    let mut problems = Vec::new();
    let mut groups: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
    // `file.<name>` alone: the source, with a path in the files-path folder.
    let mut short: BTreeMap<String, String> = BTreeMap::new();
    let mut files_path = DEFAULT_FILES_PATH.to_string();
    for (key, value) in pairs {
        if key.strip_prefix(PREFIX) == Some(FILES_PATH) {
            match path_problem(Path::new(&value)) {
                None if value.len() > 1 => files_path = value.trim_end_matches('/').to_string(),
                problem => problems.push(format!(
                    "{key} = {value:?}: {}; give an absolute folder such as \"{DEFAULT_FILES_PATH}\"",
                    problem.unwrap_or("not a folder")
                )),
            }
            continue;
        }
        let Some(rest) = key.strip_prefix(PREFIX).and_then(|k| k.strip_prefix(FILE)) else {
            continue;
        };
        let (name, attribute) = match rest.rsplit_once('.') {
            Some((name, attribute)) => (name, attribute),
            None => (rest, ""),
        };
        if !is_file_name(name) {
            problems.push(format!(
                "{key}: the file name {name:?} must be letters, digits, '-' or '_'"
            ));
            continue;
        }
        if attribute.is_empty() {
            short.insert(name.to_string(), value);
            continue;
        }
        let Some(attribute) = ATTRIBUTES.iter().find(|a| **a == attribute) else {
            problems.push(format!(
                "{key}: unknown attribute {attribute:?}; allowed: {}",
                ATTRIBUTES.join(", ")
            ));
            continue;
        };
        groups
            .entry(name.to_string())
            .or_default()
            .insert(attribute, value);
    }
    for (name, source) in short {
        let attrs = groups.entry(name.clone()).or_default();
        if attrs.contains_key("source") {
            problems.push(format!(
                "{PREFIX}{FILE}{name} and {PREFIX}{FILE}{name}.source both give a source; keep one"
            ));
        }
        attrs.insert("source", source);
        attrs
            .entry("path")
            .or_insert_with(|| format!("{files_path}/{name}"));
    }
    let mut out = Vec::new();
    for (name, attrs) in groups {
        let at = format!("{PREFIX}{FILE}{name}");
        if let Some(entry) = entry_from(&at, &attrs, &mut problems) {
            out.push((at, entry));
        }
    }
    (out, problems)
}

/// One file's attributes (`at` names its annotation in problems); None when it has a problem.
fn entry_from(
    at: &str,
    attrs: &BTreeMap<&'static str, String>,
    problems: &mut Vec<String>,
) -> Option<FileEntry> {
    let before = problems.len();
    let path = match attrs.get("path").map(|p| (p, path_problem(Path::new(p)))) {
        Some((p, None)) => Some(PathBuf::from(p)),
        Some((p, Some(problem))) => {
            problems.push(format!("{at}.path = {p:?}: {problem}"));
            None
        }
        None => {
            problems.push(format!(
                "{at}.path is missing: give the target's absolute path"
            ));
            None
        }
    };
    let source = match attrs.get("source") {
        Some(s) if !s.is_empty() => Some(s.clone()),
        _ => {
            problems.push(format!(
                "{at}.source is missing: give awssm:<id>[#<key>], awsparam:<name> or a \
                     text with ${{awssm:...}}"
            ));
            None
        }
    };
    let mode = match attrs.get("mode") {
        None => Some(DEFAULT_FILE_MODE),
        Some(m) => parse_file_mode(m)
            .map_err(|e| problems.push(format!("{at}.mode: {e}")))
            .ok(),
    };
    let mut id = |attr: &str| -> Option<u32> {
        let v = attrs.get(attr)?;
        match v.trim().parse::<u32>() {
            Ok(n) if n < u32::MAX => Some(n),
            _ => {
                problems.push(format!("{at}.{attr} = {v:?}: must be a numeric id"));
                None
            }
        }
    };
    let uid = id("uid");
    let gid = id("gid");
    if problems.len() != before {
        return None;
    }
    Some(FileEntry {
        path: path?,
        content: FileContent::Source(source?),
        mode: mode?,
        uid,
        gid,
        allow_disk: false,
    })
}

/// A file's `<name>` in the keys: letters, digits, `-` and `_`.
pub fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A Go `%q` string: `"..."` with `\a \b \f \n \r \t \v \\ \" \xHH \uHHHH \UHHHHHHHH` and octal
/// `\ooo` escapes.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    let hex = |chars: &mut std::str::Chars, n: usize| -> Option<u32> {
        let digits: String = chars.by_ref().take(n).collect();
        if digits.len() != n {
            return None;
        }
        u32::from_str_radix(&digits, 16).ok()
    };
    while let Some(c) = chars.next() {
        if c == '"' {
            return None;
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let byte = match chars.next()? {
            'a' => 0x07,
            'b' => 0x08,
            'f' => 0x0c,
            'n' => b'\n',
            'r' => b'\r',
            't' => b'\t',
            'v' => 0x0b,
            '\\' => b'\\',
            '"' => b'"',
            '\'' => b'\'',
            'x' => u8::try_from(hex(&mut chars, 2)?).ok()?,
            u @ ('u' | 'U') => {
                let c = char::from_u32(hex(&mut chars, if u == 'u' { 4 } else { 8 })?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            d @ '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                u8::from_str_radix(&format!("{d}{rest}"), 8).ok()?
            }
            _ => return None,
        };
        out.push(byte);
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quoted_values_decode() {
        for (quoted, want) in [
            (r#""plain""#, "plain"),
            (r#""a\nb\tc""#, "a\nb\tc"),
            (r#""say \"hi\" \\o/""#, "say \"hi\" \\o/"),
            (r#""caf\u00e9 ☃""#, "café ☃"),
            (r#""\x41\101""#, "AA"),
            (r#""""#, ""),
        ] {
            assert_eq!(unquote(quoted).as_deref(), Some(want), "{quoted}");
        }
        for bad in ["plain", r#""open"#, r#""a"b""#, r#""\q""#, r#""\u12""#] {
            assert_eq!(unquote(bad), None, "{bad}");
        }
    }

    #[test]
    fn downward_api_file_gives_entries() {
        let text = r#"kubernetes.io/config.seen="2024-01-01T00:00:00Z"
secrets-agent.io/file.app-conf.mode="0440"
secrets-agent.io/file.app-conf.path="/run/secrets/app.conf"
secrets-agent.io/file.app-conf.source="[db]\nuser = ${awssm:db#user}\npassword = ${awssm:db#password}\n"
secrets-agent.io/file.app-conf.uid="1000"
secrets-agent.io/file.db.path="/run/secrets/db"
secrets-agent.io/file.db.source="awssm:db#password"
secrets-agent.io/inject="true"
secrets-agent.io/mode="files"
"#;
        let got = entries(text).unwrap();
        assert_eq!(got.len(), 2);
        let (name, conf) = &got[0];
        assert_eq!(name, "secrets-agent.io/file.app-conf");
        assert_eq!(conf.path, PathBuf::from("/run/secrets/app.conf"));
        assert_eq!(conf.mode, 0o440);
        assert_eq!(conf.uid, Some(1000));
        assert_eq!(
            conf.content,
            FileContent::Source(
                "[db]\nuser = ${awssm:db#user}\npassword = ${awssm:db#password}\n".into()
            )
        );
        assert_eq!(got[1].1.mode, 0o400);
        assert_eq!(got[1].1.uid, None);
    }

    #[test]
    fn the_short_form_writes_into_files_path() {
        let text = r#"secrets-agent.io/file.db="awssm:db#password"
secrets-agent.io/file.tls.mode="0440"
secrets-agent.io/file.tls="awssm:tls"
secrets-agent.io/files-path="/secrets/"
"#;
        let got = entries(text).unwrap();
        assert_eq!(got[0].1.path, PathBuf::from("/secrets/db"));
        assert_eq!(
            got[0].1.content,
            FileContent::Source("awssm:db#password".into())
        );
        assert_eq!(got[1].1.path, PathBuf::from("/secrets/tls"));
        assert_eq!(got[1].1.mode, 0o440);
        let default = entries("secrets-agent.io/file.db=\"awssm:db\"\n").unwrap();
        assert_eq!(default[0].1.path, PathBuf::from("/run/secrets/app/db"));
        let both =
            "secrets-agent.io/file.db=\"awssm:a\"\nsecrets-agent.io/file.db.source=\"awssm:b\"\n";
        assert!(entries(both).unwrap_err()[0].contains("both give a source"));
    }

    #[test]
    fn bad_annotations_are_named() {
        let text = r#"secrets-agent.io/file.a.path="relative"
secrets-agent.io/file.a.source="awssm:x"
secrets-agent.io/file.b.source="awssm:x"
secrets-agent.io/file.c.path="/c"
secrets-agent.io/file.c.source="awssm:x"
secrets-agent.io/file.c.mode="rw"
secrets-agent.io/file.c.owner="me"
secrets-agent.io/file.d.path=unquoted
secrets-agent.io/file.e.path="/run/secrets/app/../../secrets-agent/token"
secrets-agent.io/file.e.source="awssm:x"
"#;
        let e = entries(text).unwrap_err().join("\n");
        for want in [
            "file.a.path = \"relative\": must be an absolute path",
            "file.b.path is missing",
            "file.c.mode: \"rw\" is not a file mode",
            "file.c.owner: unknown attribute \"owner\"",
            "file.d.path: the value is not a Go-quoted string",
            "file.e.path = \"/run/secrets/app/../../secrets-agent/token\": must not contain '..'",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
    }
}
