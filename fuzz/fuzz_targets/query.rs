//! The request parser: any request target gives an answer or a clean error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrets_agent::api::server::Query;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        let _ = Query::parse(raw);
        // The same bytes as a whole request target, as hyper would hand it over.
        if let Ok(uri) = raw.parse::<http::Uri>() {
            let _ = Query::parse(uri.query().unwrap_or(""));
        }
    }
});
