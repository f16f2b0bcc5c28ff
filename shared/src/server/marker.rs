//! The environment marker of a requirement line (`; python_version > "3.8"`), checked against
//! PEP 508's grammar and normalised in one pass: its cost is linear in its length.
//!
//! A marker is not handed to `pep508_rs`: it builds a decision diagram of the whole expression,
//! and printing one back is exponential in the number of clauses (ten `extra` clauses took
//! minutes). Here a marker is read token by token, a comparison at a time, and written back with
//! one spelling of its whitespace and quotes; nothing is simplified. Bounded besides: at most
//! [`MAX_CLAUSES`] comparisons, [`MAX_DEPTH`] levels of parentheses and [`MAX_LENGTH`]
//! characters; `extra` markers are refused (they mean nothing in a requirements list).

use std::str::FromStr;

use pep508_rs::pep440_rs::VersionSpecifier;

/// Comparisons in one marker.
pub const MAX_CLAUSES: usize = 8;
/// Levels of parentheses in one marker.
pub const MAX_DEPTH: usize = 4;
/// Characters in one marker.
pub const MAX_LENGTH: usize = 300;

/// Why a marker was refused, in words for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerError {
    Invalid,
    Extra,
    TooLong,
    TooManyClauses,
    TooDeep,
}

impl MarkerError {
    pub fn reason(self) -> String {
        match self {
            Self::Invalid => "the marker is not a valid PEP 508 marker".into(),
            Self::Extra => "extra markers are not accepted in a requirements list".into(),
            Self::TooLong => format!("the marker is longer than {MAX_LENGTH} characters"),
            Self::TooManyClauses => format!("the marker has more than {MAX_CLAUSES} comparisons"),
            Self::TooDeep => format!("the marker nests parentheses more than {MAX_DEPTH} deep"),
        }
    }
}

/// A marker that passed: its normalised text, and the steps it took to read and write (each
/// character scanned, each token read, each piece written), which tests count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub text: String,
    pub steps: usize,
}

/// Checks and normalises a marker (the text after `;`) with the bounds of this module.
pub fn normalise(text: &str) -> Result<Marker, MarkerError> {
    if text.len() > MAX_LENGTH {
        return Err(MarkerError::TooLong);
    }
    normalise_within(text, MAX_CLAUSES)
}

/// [`normalise`] with `max_clauses` comparisons, and no bound on the length.
pub fn normalise_within(text: &str, max_clauses: usize) -> Result<Marker, MarkerError> {
    let mut steps = 0;
    let tokens = tokens(text, &mut steps)?;
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        out: String::with_capacity(text.len()),
        clauses: 0,
        max_clauses,
        steps,
    };
    parser.or(0)?;
    if parser.at != tokens.len() {
        return Err(MarkerError::Invalid);
    }
    Ok(Marker {
        text: parser.out,
        steps: parser.steps,
    })
}

/// The variables of PEP 508, and whether their values compare as versions.
const VARIABLES: [(&str, bool); 11] = [
    ("python_version", true),
    ("python_full_version", true),
    ("implementation_version", true),
    ("os_name", false),
    ("sys_platform", false),
    ("platform_release", false),
    ("platform_system", false),
    ("platform_version", false),
    ("platform_machine", false),
    ("platform_python_implementation", false),
    ("implementation_name", false),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    Word(&'a str),
    Text(&'a str, char),
    Operator(&'a str),
}

/// The tokens of a marker, each character looked at once.
fn tokens<'a>(text: &'a str, steps: &mut usize) -> Result<Vec<Token<'a>>, MarkerError> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        *steps += 1;
        let start = i;
        match bytes[i] {
            b' ' | b'\t' => i += 1,
            b'(' => {
                found.push(Token::Open);
                i += 1;
            }
            b')' => {
                found.push(Token::Close);
                i += 1;
            }
            quote @ (b'"' | b'\'') => {
                let end = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == quote)
                    .ok_or(MarkerError::Invalid)?;
                *steps += end + 1;
                if !bytes[i + 1..i + 1 + end].iter().all(|b| (b' '..=b'~').contains(b)) {
                    return Err(MarkerError::Invalid);
                }
                found.push(Token::Text(&text[i + 1..i + 1 + end], quote as char));
                i += end + 2;
            }
            b'=' | b'!' | b'<' | b'>' | b'~' => {
                while i < bytes.len() && matches!(bytes[i], b'=' | b'!' | b'<' | b'>' | b'~') {
                    i += 1;
                }
                *steps += i - start;
                let operator = &text[start..i];
                if !matches!(operator, "==" | "!=" | "<" | "<=" | ">" | ">=" | "~=" | "===") {
                    return Err(MarkerError::Invalid);
                }
                found.push(Token::Operator(operator));
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                *steps += i - start;
                found.push(Token::Word(&text[start..i]));
            }
            _ => return Err(MarkerError::Invalid),
        }
    }
    Ok(found)
}

/// A recursive-descent reader of `or := and ('or' and)*`, `and := atom ('and' atom)*`,
/// `atom := '(' or ')' | value op value`, writing the normalised marker as it goes.
struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    at: usize,
    out: String,
    clauses: usize,
    max_clauses: usize,
    steps: usize,
}

impl<'a> Parser<'_, 'a> {
    fn next(&mut self) -> Option<Token<'a>> {
        let token = self.tokens.get(self.at).copied();
        self.at += 1;
        self.steps += 1;
        token
    }

    fn peek_word(&self, word: &str) -> bool {
        self.tokens.get(self.at) == Some(&Token::Word(word))
    }

    fn write(&mut self, piece: &str) {
        self.steps += 1;
        self.out.push_str(piece);
    }

    fn or(&mut self, depth: usize) -> Result<(), MarkerError> {
        self.joined(" or ", depth, |parser, depth| parser.joined(" and ", depth, Self::atom))
    }

    /// `part (word part)*`: the shape of `or` and of `and`.
    fn joined(
        &mut self,
        word: &str,
        depth: usize,
        part: fn(&mut Self, usize) -> Result<(), MarkerError>,
    ) -> Result<(), MarkerError> {
        part(self, depth)?;
        while self.peek_word(word.trim()) {
            self.at += 1;
            self.write(word);
            part(self, depth)?;
        }
        Ok(())
    }

    fn atom(&mut self, depth: usize) -> Result<(), MarkerError> {
        if self.tokens.get(self.at) == Some(&Token::Open) {
            if depth == MAX_DEPTH {
                return Err(MarkerError::TooDeep);
            }
            self.at += 1;
            self.write("(");
            self.or(depth + 1)?;
            if self.next() != Some(Token::Close) {
                return Err(MarkerError::Invalid);
            }
            self.write(")");
            return Ok(());
        }
        self.clauses += 1;
        if self.clauses > self.max_clauses {
            return Err(MarkerError::TooManyClauses);
        }
        let left = self.next().ok_or(MarkerError::Invalid)?;
        let operator = match self.next() {
            Some(Token::Operator(op)) => op,
            Some(Token::Word("in")) => "in",
            Some(Token::Word("not")) if self.next() == Some(Token::Word("in")) => "not in",
            _ => return Err(MarkerError::Invalid),
        };
        let right = self.next().ok_or(MarkerError::Invalid)?;
        let (variable, value, quote) = match (left, right) {
            (Token::Word(v), Token::Text(t, q)) | (Token::Text(t, q), Token::Word(v)) => (v, t, q),
            _ => return Err(MarkerError::Invalid),
        };
        if variable == "extra" {
            return Err(MarkerError::Extra);
        }
        let (_, versioned) = VARIABLES
            .iter()
            .find(|(name, _)| *name == variable)
            .ok_or(MarkerError::Invalid)?;
        let compares_versions = !matches!(operator, "in" | "not in");
        if *versioned && compares_versions && VersionSpecifier::from_str(&format!("{operator}{value}")).is_err() {
            return Err(MarkerError::Invalid);
        }
        if !*versioned && matches!(operator, "~=" | "===") {
            return Err(MarkerError::Invalid);
        }
        self.steps += value.len();
        let value = format!("{quote}{value}{quote}");
        let [first, second] = match left {
            Token::Word(_) => [variable, value.as_str()],
            _ => [value.as_str(), variable],
        };
        for piece in [first, " ", operator, " ", second] {
            self.write(piece);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clauses(n: usize, variable: &str) -> String {
        (0..n)
            .map(|i| format!("({variable}=='a{i:04}' and os_name=='b{i:04}')"))
            .collect::<Vec<_>>()
            .join(" or ")
    }

    #[test]
    fn markers_are_written_one_way() {
        for (marker, normalised) in [
            ("python_version>'3.8'", "python_version > '3.8'"),
            (
                "python_version > \"3.8\"  and(sys_platform=='linux' or os_name == \"nt\")",
                "python_version > \"3.8\" and (sys_platform == 'linux' or os_name == \"nt\")",
            ),
            ("'linux' in sys_platform", "'linux' in sys_platform"),
            (
                "platform_machine not  in 'x86_64 aarch64'",
                "platform_machine not in 'x86_64 aarch64'",
            ),
            ("python_full_version ~= '3.11.2'", "python_full_version ~= '3.11.2'"),
        ] {
            assert_eq!(normalise(marker).unwrap().text, normalised, "{marker}");
        }
    }

    #[test]
    fn what_is_refused_and_why() {
        for (marker, why) in [
            ("extra == 'test'", MarkerError::Extra),
            ("'test' == extra", MarkerError::Extra),
            ("python_version > '3.8' and extra=='x'", MarkerError::Extra),
            ("", MarkerError::Invalid),
            ("python_version", MarkerError::Invalid),
            ("python_version >", MarkerError::Invalid),
            ("python_version > 3.8", MarkerError::Invalid),
            ("python_version > 'three'", MarkerError::Invalid),
            ("home == 'x'", MarkerError::Invalid),
            ("os_name == sys_platform", MarkerError::Invalid),
            ("'a' == 'b'", MarkerError::Invalid),
            ("os_name ~= 'x'", MarkerError::Invalid),
            ("os_name == 'x' or", MarkerError::Invalid),
            ("(os_name == 'x'", MarkerError::Invalid),
            ("os_name == 'x')", MarkerError::Invalid),
            ("os_name =! 'x'", MarkerError::Invalid),
            ("os_name == 'x", MarkerError::Invalid),
            ("os_name == 'x' and and os_name == 'y'", MarkerError::Invalid),
            ("os_name is 'x'", MarkerError::Invalid),
            ("os_name == 'é'", MarkerError::Invalid),
            ("((((( os_name == 'x' )))))", MarkerError::TooDeep),
            (&clauses(5, "sys_platform"), MarkerError::TooManyClauses),
            (
                &format!("os_name == '{}'", "x".repeat(MAX_LENGTH)),
                MarkerError::TooLong,
            ),
        ] {
            assert_eq!(normalise(marker).unwrap_err(), why, "{marker}");
        }
        assert!(normalise(&clauses(4, "sys_platform")).is_ok(), "eight comparisons pass");
        assert!(normalise("(((( os_name == 'x' ))))").is_ok(), "four levels pass");
    }

    /// Twice the clauses (of one width) cost at most twice the steps, and every marker no more
    /// steps than a few per character.
    #[test]
    fn the_cost_grows_linearly_with_the_clauses() {
        for n in [4, 8, 16, 32, 64] {
            let one = normalise_within(&clauses(n, "sys_platform"), usize::MAX).unwrap();
            let two = normalise_within(&clauses(2 * n, "sys_platform"), usize::MAX).unwrap();
            assert!(
                two.steps <= 2 * one.steps + 8,
                "{n} clauses: {} steps, {}: {}",
                one.steps,
                2 * n,
                two.steps
            );
            assert!(two.steps <= 4 * clauses(2 * n, "sys_platform").len());
            let extra = normalise_within(&clauses(2 * n, "extra"), usize::MAX);
            assert_eq!(extra.unwrap_err(), MarkerError::Extra);
        }
    }
}
