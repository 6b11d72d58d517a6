use super::*;

fn load(toml: Option<&str>, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_sources(toml, &Overrides::default(), &env(pairs))
}

#[test]
fn defaults_match_the_aws_agent() {
    let c = load(None, &[]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:2773");
    assert_eq!(c.secrets_ttl, Duration::from_secs(300));
    assert_eq!(c.cache_size, 1000);
    assert_eq!(c.max_conn, 800);
    assert_eq!(c.path_prefix, "/v1/");
    assert_eq!(c.ssrf_headers.len(), 2);
    assert_eq!(c.ssrf_env_variables[1], "AWS_SESSION_TOKEN");
}

#[test]
fn flat_layout_loads_with_numbers_or_numeric_strings() {
    let c = load(
        Some(
            r#"
            log_level = "DEBUG"
            http_port = "2775"
            ttl_seconds = 60
            cache_size = "10"
            ssrf_headers = ["X-Token"]
            ssrf_env_variables = ["MY_TOKEN"]
            path_prefix = "/secrets/"
            max_conn = 20
            region = "eu-west-1"
            validate_credentials = false
            ignore_transient_errors = false
            log_to_file = false
            "#,
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.listen.to_string(), "127.0.0.1:2775");
    assert_eq!(c.secrets_ttl, Duration::from_secs(60));
    assert_eq!(c.parameters_ttl, Duration::from_secs(60));
    assert_eq!(c.cache_size, 10);
    assert_eq!(c.ssrf_headers, vec!["X-Token"]);
    assert_eq!(c.path_prefix, "/secrets/");
    assert_eq!(c.max_conn, 20);
    assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    assert!(!c.ignore_transient_errors);
}

#[test]
fn nested_layout_loads() {
    let c = load(
        Some(
            r#"
            [logging]
            log_level = "warn"
            [capabilities.secrets_manager]
            enabled = true
            http_port = 2999
            max_conn = 50
            [capabilities.secrets_manager.cache]
            ttl_seconds = 1800
            cache_size = 200
            [capabilities.secrets_manager.security]
            ssrf_headers = ["X-Custom"]
            ssrf_env_variables = ["MY_TOKEN"]
            [capabilities.secrets_manager.prefetch]
            cache_buffer_ratio = 0.5
            [[capabilities.secrets_manager.prefetch.secrets]]
            secret_id = "db-password"
            [[capabilities.secrets_manager.prefetch.secrets]]
            secret_id = "api-key"
            "#,
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.log_level, LogLevel::Warn);
    assert_eq!(c.listen.to_string(), "127.0.0.1:2999");
    assert_eq!(c.secrets_ttl, Duration::from_secs(1800));
    assert_eq!(c.cache_size, 200);
    assert_eq!(c.ssrf_env_variables, vec!["MY_TOKEN"]);
    assert_eq!(c.prefetch_cache_share, 0.5);
    assert_eq!(
        c.refresh_ratio, 0.8,
        "cache_buffer_ratio is not the refresh share"
    );
    assert_eq!(c.prefetch_secrets, vec!["db-password", "api-key"]);
}

/// Issue 22.1: `cache_buffer_ratio` and `max_jitter_seconds` mean what they mean in the AWS
/// Workload Credentials Provider 3.x (prefetch's share of the cache, 0.1–1.0; jitter before
/// the prefetch, 0–10 s) in its flat `[prefetch]` table and in the nested layout; our
/// refresh-ahead share is `refresh_ratio` in both.
#[test]
fn aws_prefetch_keys_keep_their_meaning_in_both_layouts() {
    let flat = r#"
        refresh_ratio = 0.6
        cache_size = 10
        [prefetch]
        cache_buffer_ratio = 0.3
        max_jitter_seconds = 10
        secrets = [{ secret_id = "a" }, { secret_id = "b" }]
    "#;
    let nested = r#"
        [capabilities.secrets_manager.cache]
        refresh_ratio = 0.6
        cache_size = 10
        [capabilities.secrets_manager.prefetch]
        cache_buffer_ratio = 0.3
        max_jitter_seconds = 10
        secrets = [{ secret_id = "a" }, { secret_id = "b" }]
    "#;
    for toml in [flat, nested] {
        let c = load(Some(toml), &[]).unwrap();
        assert_eq!(c.refresh_ratio, 0.6, "{toml}");
        assert_eq!(c.prefetch_cache_share, 0.3, "{toml}");
        assert_eq!(c.prefetch_jitter, Duration::from_secs(10), "{toml}");
        assert_eq!(c.prefetch_secrets, vec!["a", "b"], "{toml}");
    }
    for (prefix, table) in [
        ("prefetch", "[prefetch]"),
        (
            "capabilities.secrets_manager.prefetch",
            "[capabilities.secrets_manager.prefetch]",
        ),
    ] {
        for (line, allowed) in [
            (
                "cache_buffer_ratio = 0.09",
                "must be a number from 0.1 to 1",
            ),
            ("cache_buffer_ratio = 1.1", "must be a number from 0.1 to 1"),
            (
                "max_jitter_seconds = 11",
                "must be a whole number from 0 to 10",
            ),
        ] {
            let err = load(Some(&format!("{table}\n{line}")), &[]).unwrap_err();
            assert_eq!(err.0, vec![format!("{prefix}.{line}: {allowed}")]);
        }
    }
    // Our own key keeps its own, wider range.
    let c = load(Some("prefetch_jitter_seconds = 60"), &[]).unwrap();
    assert_eq!(c.prefetch_jitter, Duration::from_secs(60));
    let c = load(None, &[("SECRETS_AGENT_REFRESH_RATIO", "0.5")]).unwrap();
    assert_eq!((c.refresh_ratio, c.prefetch_cache_share), (0.5, 0.8));
}

/// The prefetch fills at most `max(1, cache_size × cache_buffer_ratio)` entries, secrets
/// first, as the AWS provider's warm-up limit.
#[test]
fn prefetch_is_cut_to_its_share_of_the_cache() {
    let ids = |n: usize| (0..n).map(|i| format!("s{i}")).collect::<Vec<_>>();
    let mut c = load(
        Some("cache_size = 10\n[prefetch]\ncache_buffer_ratio = 0.5"),
        &[],
    )
    .unwrap();
    c.prefetch_secrets = ids(4);
    c.prefetch_parameters = ids(3);
    let (secrets, parameters, left_out) = c.prefetch_ids();
    assert_eq!(
        (secrets.len(), parameters, left_out),
        (4, vec!["s0".into()], 2)
    );
    c.prefetch_secrets = ids(7);
    assert_eq!(c.prefetch_ids().0, ids(5));
    c.cache_size = 1;
    c.prefetch_cache_share = 0.1;
    assert_eq!(c.prefetch_ids(), (ids(1), vec![], 9));
    c.cache_size = 1000;
    c.prefetch_cache_share = 0.8;
    assert_eq!(c.prefetch_ids(), (ids(7), ids(3), 0));
}

/// Each bad input, alone, gives exactly one problem that names it and what is allowed.
#[test]
fn invalid_values_are_reported_by_name() {
    let cases: &[(&str, &str)] = &[
        ("http_port = 70000", "http_port = 70000: must be a whole number from 1 to 65535"),
        ("http_port = \"abc\"", "http_port = \"abc\": must be a whole number from 1 to 65535"),
        ("ttl_seconds = -1", "ttl_seconds = -1: must be a whole number from 0 to 86400"),
        ("cache_size = 0", "cache_size = 0: must be a whole number from 1 to 1000"),
        ("cache_size = 1001", "cache_size = 1001: must be a whole number from 1 to 1000"),
        ("max_conn = 0", "max_conn = 0: must be a whole number from 1 to 1000"),
        ("log_level = \"loud\"", "log_level = \"loud\": must be one of debug, info, warn, error, none"),
        ("path_prefix = \"v1\"", "path_prefix = \"v1\": must start with /"),
        ("ssrf_headers = []", "ssrf_headers = []: must name at least one header"),
        ("ssrf_env_variables = []", "ssrf_env_variables = []: must name at least one environment variable"),
        ("ignore_transient_errors = \"maybe\"", "ignore_transient_errors = \"maybe\": must be true or false"),
        ("refresh_ratio = 1.5", "refresh_ratio = 1.5: must be a number from 0.1 to 1"),
        ("listen_address = \"localhost:x\"", "listen_address = \"localhost:x\": must be an IP address"),
        ("listen_address = \"unix:relative.sock\"", "must be absolute"),
        ("ttl_secondz = 5", "ttl_secondz: unknown key \"ttl_secondz\""),
        ("[capabilities.secrets_manager.cache]\nttl = 5", "capabilities.secrets_manager.cache.ttl: unknown key"),
        ("[[capabilities.secrets_manager.prefetch.secrets]]\nsecret_id = \"a\"\nrole_arn = \"arn:aws:iam::1:role/x\"", "must be an IAM role ARN"),
        ("this is not toml", "config file is not valid TOML"),
    ];
    for (toml, expected) in cases {
        let err = load(Some(toml), &[]).expect_err(toml);
        assert_eq!(err.0.len(), 1, "{toml}: {err}");
        assert!(err.0[0].contains(expected), "{toml}: got {:?}", err.0[0]);
    }
}

/// Issue 19: prefetch entries and tag filters (3.x `filter_tags = [{ key, role_arn }]`) that
/// name a role are grouped by role, kept apart from the agent's own.
#[test]
fn role_settings_load_in_both_layouts_and_group_prefetch_by_role() {
    const A: &str = "arn:aws:iam::111111111111:role/a";
    const B: &str = "arn:aws:iam::222222222222:role/b";
    let nested = format!(
        r#"
        [capabilities.secrets_manager]
        max_roles = 5
        allowed_roles = ["{A}", "{B}"]
        role_session_name = "my-agent"
        [capabilities.secrets_manager.prefetch]
        filter_tags = [{{ key = "Own" }}, {{ key = "Team", role_arn = "{A}" }},
                       {{ key = "Env", role_arn = "{A}" }}, {{ key = "Team", role_arn = "{B}" }}]
        [[capabilities.secrets_manager.prefetch.secrets]]
        secret_id = "own"
        [[capabilities.secrets_manager.prefetch.secrets]]
        secret_id = "db"
        role_arn = "{A}"
        [[capabilities.secrets_manager.prefetch.secrets]]
        secret_id = "api"
        role_arn = "{A}"
        [[capabilities.secrets_manager.prefetch.secrets]]
        secret_id = "db"
        role_arn = "{B}"
        "#
    );
    // 3.x's flat layout: root keys and a root [prefetch] table.
    let flat = format!(
        r#"
        max_roles = "5"
        allowed_roles = ["{A}", "{B}"]
        role_session_name = "my-agent"
        [prefetch]
        max_jitter_seconds = 2
        secrets = [{{ secret_id = "own" }}, {{ secret_id = "db", role_arn = "{A}" }},
                   {{ secret_id = "api", role_arn = "{A}" }}, {{ secret_id = "db", role_arn = "{B}" }}]
        filter_tags = [{{ key = "Own" }}, {{ key = "Team", role_arn = "{A}" }},
                       {{ key = "Env", role_arn = "{A}" }}, {{ key = "Team", role_arn = "{A}" }},
                       {{ key = "Team", role_arn = "{B}" }}]
        "#
    );
    for text in [nested, flat] {
        let c = load(Some(&text), &[]).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.max_roles, 5);
        assert_eq!(c.allowed_roles, vec![A, B]);
        assert_eq!(c.role_session_name, "my-agent");
        assert_eq!(c.prefetch_secrets, vec!["own"]);
        assert_eq!(c.prefetch_role_secrets[A], vec!["db", "api"]);
        assert_eq!(c.prefetch_role_secrets[B], vec!["db"]);
        assert_eq!(c.prefetch_tags, vec!["Own"]);
        assert_eq!(c.prefetch_role_tags[A], vec!["Team", "Env"]);
        assert_eq!(c.prefetch_role_tags[B], vec!["Team"]);
    }
    let c = load(None, &[]).unwrap();
    assert_eq!(c.max_roles, 20, "3.x's default");
    assert!(c.allowed_roles.is_empty(), "any role");
    assert_eq!(c.role_session_name, "secrets-manager-provider");
    let c = load(
        None,
        &[
            ("AWS_ROLE_SESSION_NAME", "from-env"),
            ("SECRETS_AGENT_ALLOWED_ROLES", &format!("{A},{B}")),
            ("SECRETS_AGENT_MAX_ROLES", "2"),
        ],
    )
    .unwrap();
    assert_eq!(c.role_session_name, "from-env");
    assert_eq!(c.allowed_roles, vec![A, B]);
    assert_eq!(c.max_roles, 2);
}

#[test]
fn role_settings_are_checked_against_each_other() {
    const A: &str = "arn:aws:iam::111111111111:role/a";
    const B: &str = "arn:aws:iam::222222222222:role/b";
    let cases = [
        (
            format!("allowed_roles = [\"{A}\"]\n[[prefetch.secrets]]\nsecret_id = \"x\"\nrole_arn = \"{B}\""),
            "is not in allowed_roles",
        ),
        (
            format!("max_roles = 1\nprefetch = [{{ secret_id = \"x\", role_arn = \"{A}\" }}, {{ secret_id = \"x\", role_arn = \"{B}\" }}]"),
            "prefetch names 2 roles but max_roles = 1",
        ),
        (
            format!("allowed_roles = [\"{A}\"]\n[prefetch]\nfilter_tags = [{{ key = \"T\", role_arn = \"{B}\" }}]"),
            "filter_tags: role_arn = \"arn:aws:iam::222222222222:role/b\" is not in allowed_roles",
        ),
        (
            format!("max_roles = 1\nprefetch = [{{ secret_id = \"x\", role_arn = \"{A}\" }}]\nfilter_tags = [{{ key = \"T\", role_arn = \"{B}\" }}, {{ key = \"U\", role_arn = \"{A}\" }}]"),
            "prefetch names 2 roles but max_roles = 1",
        ),
        ("allowed_roles = [\"reader\"]".into(), "\"reader\" must be an IAM role ARN"),
        ("role_session_name = \"has space\"".into(), "must be 2 to 64 characters"),
        ("max_roles = 0".into(), "max_roles = 0: must be a whole number from 1 to 1000"),
    ];
    for (text, expected) in cases {
        let err = load(Some(&text), &[]).expect_err(&text);
        assert_eq!(err.0.len(), 1, "{text}: {err}");
        assert!(err.0[0].contains(expected), "{text}: got {:?}", err.0[0]);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = load(Some("http_port = 0\ncache_size = 0\nbogus = 1"), &[]).unwrap_err();
    assert_eq!(err.0.len(), 3, "{err}");
}

#[test]
fn extension_env_vars_apply() {
    let c = load(
        None,
        &[
            ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "50"),
            ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2800"),
            ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "error"),
            ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "7"),
            ("SECRETS_MANAGER_TTL", "120"),
            ("SSM_PARAMETER_STORE_TTL", "30"),
            ("SECRETS_MANAGER_TIMEOUT_MILLIS", "250"),
            ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "0"),
        ],
    )
    .unwrap();
    assert_eq!(c.cache_size, 50);
    assert_eq!(c.listen.to_string(), "127.0.0.1:2800");
    assert_eq!(c.log_level, LogLevel::Error);
    assert_eq!(c.max_backend_calls, 7);
    assert_eq!(c.secrets_ttl, Duration::from_secs(120));
    assert_eq!(c.parameters_ttl, Duration::from_secs(30));
    assert_eq!(c.secrets_timeout, Duration::from_millis(250));
    assert_eq!(c.parameters_timeout, DEFAULT_BACKEND_TIMEOUT);
}

#[test]
fn cache_max_bytes_from_file_or_env_within_its_range() {
    assert_eq!(
        load(None, &[]).unwrap().cache_max_bytes,
        DEFAULT_CACHE_MAX_BYTES
    );
    let c = load(Some("cache_max_bytes = 33554432"), &[]).unwrap();
    assert_eq!(c.cache_max_bytes, 32 * 1024 * 1024);
    let c = load(None, &[("SECRETS_AGENT_CACHE_MAX_BYTES", "2097152")]).unwrap();
    assert_eq!(c.cache_max_bytes, 2 * 1024 * 1024);
    let err = load(None, &[("SECRETS_AGENT_CACHE_MAX_BYTES", "1000")]).unwrap_err();
    assert_eq!(
        err.0,
        vec![
            "SECRETS_AGENT_CACHE_MAX_BYTES = \"1000\": must be a whole number from 1048576 \
              to 4294967296"
                .to_string()
        ]
    );
}

/// Issue 20.6: what the AWS extension accepts starts here too; above our caps the value is
/// clamped with a warning naming the variable and the value used.
#[test]
fn aws_extension_variables_are_clamped_not_refused() {
    let c = load(
        None,
        &[
            ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "5000"),
            ("SECRETS_MANAGER_TTL", "100000"),
            ("SSM_PARAMETER_STORE_TTL", "3600"),
            ("SECRETS_MANAGER_TIMEOUT_MILLIS", "900000"),
        ],
    )
    .unwrap();
    assert_eq!(c.max_backend_calls, 5000);
    assert_eq!(c.secrets_ttl, Duration::from_secs(MAX_TTL_SECONDS));
    assert_eq!(c.parameters_ttl, Duration::from_secs(3600));
    assert_eq!(c.secrets_timeout, Duration::from_secs(600));
    let mut w = c.warnings.clone();
    w.sort();
    assert_eq!(
        w,
        vec![
            "SECRETS_MANAGER_TIMEOUT_MILLIS = \"900000\" is above the maximum secrets-agent \
             allows; using 600000",
            "SECRETS_MANAGER_TTL = \"100000\" is above the maximum secrets-agent allows; \
             using 86400",
        ]
    );
    let c = load(
        None,
        &[("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "99999999")],
    )
    .unwrap();
    assert_eq!(c.max_backend_calls, MAX_BACKEND_CALLS as usize);
    // Our own keys keep their strict ranges.
    let err = load(Some("ttl_seconds = 100000"), &[]).unwrap_err();
    assert!(err.0[0].contains("from 0 to 86400"), "{err}");
}

#[test]
fn cache_disabled_by_env() {
    let c = load(
        None,
        &[("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "false")],
    )
    .unwrap();
    assert!(c.caching_disabled());
    let c = load(None, &[("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "0")]).unwrap();
    assert!(c.caching_disabled());
}

#[test]
fn env_beats_file_and_flags_beat_env() {
    let toml = "http_port = 2801\nttl_seconds = 10";
    let c = load(
        Some(toml),
        &[("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2802")],
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:2802");
    assert_eq!(c.secrets_ttl, Duration::from_secs(10));
    let overrides = Overrides {
        port: Some("2803".into()),
        ..Overrides::default()
    };
    let c = Config::from_sources(
        Some(toml),
        &overrides,
        &env(&[("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2802")]),
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:2803");
}

#[test]
fn a_bad_port_flag_is_reported_like_any_setting() {
    for bad in ["70000", "abc", "0", ""] {
        let overrides = Overrides {
            port: Some(bad.into()),
            ..Overrides::default()
        };
        let err = Config::from_sources(None, &overrides, &env(&[])).unwrap_err();
        assert_eq!(
            err.0,
            vec![format!(
                "--port = {bad:?}: must be a whole number from 1 to 65535"
            )]
        );
    }
}

#[test]
fn an_empty_config_variable_means_no_file() {
    let c = Config::load(
        &Overrides::default(),
        &env(&[("SECRETS_AGENT_CONFIG", ""), ("SECRETS_MANAGER_TTL", "7")]),
    )
    .unwrap();
    assert_eq!(c.secrets_ttl, Duration::from_secs(7));
    let overrides = Overrides {
        config_file: Some(PathBuf::new()),
        ..Overrides::default()
    };
    let err = Config::load(&overrides, &env(&[])).unwrap_err();
    assert!(err.to_string().contains("--config is empty"), "{err}");
}

#[test]
fn bad_env_values_name_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED",
            "yes",
            "must be true or false",
        ),
        (
            "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE",
            "1001",
            "from 0 to 1000",
        ),
        (
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
            "0",
            "from 1 to 65535",
        ),
        (
            "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL",
            "verbose",
            "must be one of",
        ),
        (
            "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS",
            "0",
            "of at least 1",
        ),
        ("SECRETS_MANAGER_TTL", "-5", "of at least 0"),
        ("SSM_PARAMETER_STORE_TTL", "ten", "of at least 0"),
        ("SECRETS_MANAGER_TIMEOUT_MILLIS", "1.5", "of at least 0"),
        ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "x", "of at least 0"),
        ("SECRETS_AGENT_LISTEN", "nowhere", "must be an IP address"),
    ];
    for (var, value, expected) in cases {
        let err = load(None, &[(var, value)]).expect_err(var);
        assert_eq!(err.0.len(), 1);
        assert!(
            err.0[0].starts_with(&format!("{var} = \"{value}\"")),
            "{}",
            err.0[0]
        );
        assert!(err.0[0].contains(expected), "{}", err.0[0]);
    }
}

#[test]
fn unknown_prefixed_env_vars_are_warned_by_name() {
    let c = load(
        None,
        &[
            ("PARAMETERS_AND_SECRETS_EXTENSION_CACHE_SIZE", "5"),
            ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZ", "5"),
            ("SECRETS_MANAGER_TTL_SECONDS", "5"),
            ("SSM_PARAMETER_STORE_TIME", "5"),
            ("SECRETS_MANAGER_TTL", "5"),
            ("HOME", "/root"),
        ],
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("PARAMETERS_AND_SECRETS_EXTENSION_CACHE_SIZE"));
    assert!(c.warnings.iter().all(|w| w.contains("is ignored")));
}

#[test]
fn files_entries_load_and_bad_ones_are_named() {
    let c = load(
        Some(
            r#"
ttl_seconds = 60
[[files]]
path = "/run/secrets/db"
source = "awssm:db#password"
[[files]]
path = "/run/secrets/app.conf"
template = "/etc/app.conf.tmpl"
mode = "0440"
uid = 1000
gid = 2000
allow_disk = true
[[files]]
path = "/run/secrets/x"
source = "awsparam:/x"
mode = 0o600
"#,
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.files.len(), 3);
    assert_eq!(c.files[0].mode, 0o400);
    assert_eq!(
        c.files[0].content,
        FileContent::Source("awssm:db#password".into())
    );
    assert_eq!(
        c.files[1],
        FileEntry {
            path: "/run/secrets/app.conf".into(),
            content: FileContent::Template("/etc/app.conf.tmpl".into()),
            mode: 0o440,
            uid: Some(1000),
            gid: Some(2000),
            allow_disk: true,
        }
    );
    assert_eq!(c.files[2].mode, 0o600);

    let e = load(
        Some(
            r#"
[[files]]
source = "awssm:a"
[[files]]
path = "relative"
source = "awssm:a"
template = "/t"
[[files]]
path = "/a"
mode = "9"
uid = -1
colour = "red"
"#,
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    for want in [
        "[[files]] #1: path = \"/absolute/target\" is required",
        "[[files]] #2: path = \"relative\": must be an absolute path",
        "[[files]] #2: give source or template, not both",
        "[[files]] #3: needs source",
        "[[files]] #3: mode: \"9\" is not a file mode",
        "[[files]] #3: uid = -1: must be a numeric id",
        "[[files]] #3: unknown key \"colour\"",
    ] {
        assert!(e.contains(want), "{want} in {e}");
    }
}

#[test]
fn file_modes_are_octal() {
    assert_eq!(parse_file_mode("0400"), Ok(0o400));
    assert_eq!(parse_file_mode("644"), Ok(0o644));
    assert_eq!(parse_file_mode("0o640"), Ok(0o640));
    for bad in ["", "0o", "8", "4755", "rw-r--r--", "-1"] {
        assert!(parse_file_mode(bad).is_err(), "{bad}");
    }
}

/// Issue 19: tag prefetch in the 3.x nested and flat layouts, our flat key and variable.
#[test]
fn prefetch_tags_in_every_layout() {
    let nested = load(
        Some(
            r#"
            [capabilities.secrets_manager.prefetch]
            filter_tags = [{ key = "Team" }, { key = "Env" }, { key = "Team" }]
            "#,
        ),
        &[],
    )
    .unwrap();
    assert_eq!(nested.prefetch_tags, vec!["Team", "Env"]);
    let tables = load(
        Some(
            r#"
            [[capabilities.secrets_manager.prefetch.filter_tags]]
            key = "Team"
            "#,
        ),
        &[],
    )
    .unwrap();
    assert_eq!(tables.prefetch_tags, vec!["Team"]);
    // The 3.x flat layout: a root [prefetch] table.
    let flat = load(
        Some(
            r#"
            http_port = 2775
            [prefetch]
            max_jitter_seconds = 2
            secrets = [{ secret_id = "db" }]
            filter_tags = [{ key = "Env" }]
            "#,
        ),
        &[],
    )
    .unwrap();
    assert_eq!(flat.prefetch_tags, vec!["Env"]);
    assert_eq!(flat.prefetch_secrets, vec!["db"]);
    assert_eq!(flat.prefetch_jitter, Duration::from_secs(2));
    let ours = load(Some(r#"prefetch_tags = ["a:b", "c"]"#), &[]).unwrap();
    assert_eq!(ours.prefetch_tags, vec!["a:b", "c"]);
    let env_var = load(None, &[("SECRETS_AGENT_PREFETCH_TAGS", "x, y")]).unwrap();
    assert_eq!(env_var.prefetch_tags, vec!["x", "y"]);
}

#[test]
fn bad_tag_filters_are_named() {
    for (toml, expect) in [
        (r#"prefetch_tags = ["!Team"]"#, "starts with '!'"),
        (r#"prefetch_tags = ["a#b"]"#, "not one Secrets Manager can filter by"),
        (
            "[capabilities.secrets_manager.prefetch]\nfilter_tags = [{ key = \"T\", role_arn = \"arn:aws:iam::1:role/r\" }]",
            "role_arn = \"arn:aws:iam::1:role/r\": must be an IAM role ARN",
        ),
        (
            "[prefetch]\nfilter_tags = [{ key = \"!T\", role_arn = \"arn:aws:iam::111111111111:role/r\" }]",
            "starts with '!'",
        ),
        (
            "[prefetch]\nfilter_tags = [{ key = \"T\", role_arn = 7 }]",
            "role_arn = 7: must be a role ARN string",
        ),
        (
            "[capabilities.secrets_manager.prefetch]\nfilter_tags = [{ name = \"T\" }]",
            "unknown key \"name\" in a tag filter",
        ),
        (
            "[capabilities.secrets_manager.prefetch]\nfilter_tags = \"T\"",
            "must be a list",
        ),
    ] {
        let e = load(Some(toml), &[]).unwrap_err();
        assert_eq!(e.0.len(), 1, "{toml}: {e}");
        assert!(e.0[0].contains(expect), "{toml}: {e}");
    }
}

/// Issue 19: `credentials_file_path` in both layouts (it stopped the agent at start before).
#[test]
fn credentials_file_path_in_both_layouts() {
    let flat = load(Some(r#"credentials_file_path = "/run/creds""#), &[]).unwrap();
    assert_eq!(flat.credentials_file, Some(PathBuf::from("/run/creds")));
    let nested = load(
        Some("[capabilities.secrets_manager]\ncredentials_file_path = \"/run/c2\""),
        &[],
    )
    .unwrap();
    assert_eq!(nested.credentials_file, Some(PathBuf::from("/run/c2")));
    let e = load(Some(r#"credentials_file_path = """#), &[]).unwrap_err();
    assert!(e.0[0].contains("must be the path"), "{e}");
}

#[test]
fn listen_addresses() {
    assert_eq!(parse_listen("::1", 2773).unwrap().to_string(), "[::1]:2773");
    assert_eq!(parse_listen("[::1]", 80).unwrap().to_string(), "[::1]:80");
    assert_eq!(
        parse_listen("0.0.0.0:9", 1).unwrap().to_string(),
        "0.0.0.0:9"
    );
    assert_eq!(
        parse_listen("unix:/run/a.sock", 1).unwrap(),
        Listen::Unix("/run/a.sock".into())
    );
    assert!(!parse_listen("0.0.0.0", 1).unwrap().is_loopback());
}
