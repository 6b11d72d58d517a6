use super::*;

#[test]
fn awscurrent_and_no_stage_share_a_key() {
    assert_eq!(
        Key::secret("a", None, Some("AWSCURRENT".into())),
        Key::secret("a", None, None)
    );
    assert_ne!(
        Key::secret("a", None, Some("AWSPREVIOUS".into())),
        Key::secret("a", None, None)
    );
}

#[test]
fn a_borrowed_key_finds_the_entry_of_the_key_it_stands_for() {
    use hashbrown::Equivalent;
    use std::hash::BuildHasher;
    let hasher = fnv::FnvBuildHasher::default();
    let role: Arc<str> = Arc::from("arn:aws:iam::123456789012:role/r");
    let cases = [
        (
            KeyRef::current_secret("db/pw"),
            Key::secret("db/pw", None, None),
        ),
        (
            KeyRef {
                version: Some("v1"),
                label: Some("AWSPREVIOUS"),
                role: Some(&role),
                ..KeyRef::current_secret("db/pw")
            },
            Key::secret("db/pw", Some("v1".into()), Some("AWSPREVIOUS".into()))
                .with_role(Some(role.clone())),
        ),
        (
            KeyRef {
                kind: Kind::Parameter,
                decrypt: true,
                ..KeyRef::current_secret("/app/x")
            },
            Key::parameter("/app/x", None, None, true),
        ),
    ];
    for (borrowed, owned) in &cases {
        assert!(borrowed.equivalent(owned), "{borrowed:?}");
        assert_eq!(
            hasher.hash_one(borrowed),
            hasher.hash_one(owned),
            "{borrowed:?}"
        );
    }
    // Each borrowed key matches only its own entry.
    assert!(!cases[0].0.equivalent(&cases[1].1));
    assert!(!cases[0].0.equivalent(&cases[2].1));
    let mut map: hashbrown::HashMap<Key, u8, fnv::FnvBuildHasher> = Default::default();
    for (i, (_, owned)) in cases.iter().enumerate() {
        map.insert(owned.clone(), i as u8);
    }
    for (i, (borrowed, _)) in cases.iter().enumerate() {
        assert_eq!(map.get(borrowed), Some(&(i as u8)));
    }
}

#[test]
fn secret_body_uses_agent_field_names_and_base64() {
    let f = secret_body(SecretFields {
        arn: Some("arn:x".into()),
        name: Some("n".into()),
        version_id: Some("v1".into()),
        secret_string: None,
        secret_binary: Some(vec![0, 1, 2, 255]),
        version_stages: Some(vec!["AWSCURRENT".into()]),
        created_date: Some(DateTime::from_secs_and_nanos(1_700_000_000, 500_000_000)),
    });
    let text = std::str::from_utf8(&f.body).unwrap();
    assert_eq!(
        text,
        r#"{"ARN":"arn:x","Name":"n","VersionId":"v1","SecretBinary":"AAEC/w==","VersionStages":["AWSCURRENT"],"CreatedDate":"1700000000.5"}"#
    );
    assert_eq!(f.version.as_deref(), Some("v1"));
}

#[test]
fn error_codes_are_classified() {
    assert_eq!(
        kind_for_code("ResourceNotFoundException", 400),
        ServiceErrorKind::NotFound
    );
    assert_eq!(
        kind_for_code("ParameterNotFound", 400),
        ServiceErrorKind::NotFound
    );
    assert_eq!(
        kind_for_code("ThrottlingException", 400),
        ServiceErrorKind::Throttled
    );
    assert_eq!(
        kind_for_code("AccessDeniedException", 400),
        ServiceErrorKind::AccessDenied
    );
    assert_eq!(
        kind_for_code("InternalServiceError", 500),
        ServiceErrorKind::ServerError
    );
    assert_eq!(
        kind_for_code("ValidationException", 400),
        ServiceErrorKind::Other
    );
}
