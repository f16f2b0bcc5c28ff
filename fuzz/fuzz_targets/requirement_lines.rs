//! Any bytes, read as the requirement lines of a spawn: checked without a panic, and every
//! accepted line is one line of printable ASCII that pip reads as one requirement.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rexec_shared::config::Vars;
use rexec_shared::server::requirements::RequirementsPolicy;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = vec!["python==3.11"];
    lines.extend(text.split('\n'));
    for allow_direct_urls in [false, true] {
        let policy = RequirementsPolicy {
            allow_direct_urls,
            ..RequirementsPolicy::from_vars(&Vars::default()).unwrap()
        };
        match policy.check(&lines) {
            Ok(reqs) => {
                for line in reqs.file().lines() {
                    assert!(line.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
                    assert!(!line.contains(['$', '\\', '#']));
                }
            }
            Err(err) => {
                let detail = err.to_string();
                assert!(detail.is_ascii() && !detail.contains('\n'), "{detail:?}");
            }
        }
    }
});
