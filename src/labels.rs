//! Labels and label selectors, as Kubernetes has them (docs/api.md, "Labels and selectors"): a job carries a map
//! of string labels, and a selector such as `team=payments,tier in (gold,silver),!legacy` picks jobs by them.
//!
//! The selector grammar is small and regular, so it is parsed here rather than by a crate: the crates that know
//! Kubernetes selectors either only build them (kube's `Selector` has no parser and brings the whole Kubernetes API
//! with it) or only evaluate a string against a map, with no parsed form to turn into SQL. `SELECTOR_PATTERN` is the
//! same grammar as a regular expression, for the OpenAPI document; a test holds the two to the same language.

use std::collections::BTreeMap;
use std::fmt;

/// A job's labels: key to value, ordered by key.
pub type Labels = BTreeMap<String, String>;

/// One requirement of `SELECTOR_PATTERN`: `!key`, `key`, `key=value` (`==`, `!=`), `key in (a,b)`, `key notin (a,b)`.
macro_rules! selector_requirement {
    () => {
        concat!(
            r"(?:![ \t\r\n]*[A-Za-z0-9._/-]{1,63}|[A-Za-z0-9._/-]{1,63}(?:[ \t\r\n]*(?:==?|!=)[ \t\r\n]*",
            r"[^ \t\r\n,()=!]{0,63}|[ \t\r\n]+(?:in|notin)[ \t\r\n]*\([ \t\r\n]*[^ \t\r\n,()=!]{0,63}",
            r"(?:[ \t\r\n]*,[ \t\r\n]*[^ \t\r\n,()=!]{0,63})*[ \t\r\n]*\))?)"
        )
    };
}
#[allow(unused_imports)] // used by the constants below, which the compiler does not count as a use
use selector_requirement;

/// At most this many labels on one job: enough to describe it, few enough to keep every job's row small.
pub const MAX_LABELS: usize = 32;
/// Keys and values are at most 63 characters, as in Kubernetes.
pub const MAX_KEY_LENGTH: usize = 63;
/// See `MAX_KEY_LENGTH`.
pub const MAX_VALUE_LENGTH: usize = 63;
/// A label key as a JSON Schema pattern.
pub const KEY_PATTERN: &str = "^[A-Za-z0-9._/-]{1,63}$";
/// A selector longer than this is refused: it bounds the parameters of the store's query (one per key and value)
/// well below what a database takes in one statement.
pub const MAX_SELECTOR_LENGTH: usize = 4096;
/// At most this many requirements in one selector: each is a condition of the store's query, and SQLite refuses
/// expressions nested deeper than 1000.
pub const MAX_REQUIREMENTS: usize = 64;

/// The selector grammar as a regular expression (JSON Schema `pattern`, ECMA-262 and Python alike), for the OpenAPI
/// document: what it matches is exactly what `Selector::parse` accepts, but for the length limit.
pub const SELECTOR_PATTERN: &str = concat!(
    r"^[ \t\r\n]*(?:",
    selector_requirement!(),
    r"(?:[ \t\r\n]*,[ \t\r\n]*",
    selector_requirement!(),
    r"){0,63})?[ \t\r\n]*$"
);
/// `SELECTOR_PATTERN` with at least one requirement: what a bulk change or removal takes.
pub const NON_EMPTY_SELECTOR_PATTERN: &str = concat!(
    r"^[ \t\r\n]*",
    selector_requirement!(),
    r"(?:[ \t\r\n]*,[ \t\r\n]*",
    selector_requirement!(),
    r"){0,63}[ \t\r\n]*$"
);

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')
}

/// Space, tab and line breaks separate a selector's tokens.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// What a selector's value may not contain: it would end the value.
fn ends_value(c: char) -> bool {
    is_space(c) || matches!(c, ',' | '(' | ')' | '=' | '!')
}

/// Check a label key: 1–63 characters of `[A-Za-z0-9._/-]`.
pub fn validate_key(key: &str) -> Result<(), String> {
    let length = key.chars().count();
    if length == 0 || length > MAX_KEY_LENGTH {
        return Err(format!("a key must be 1–{MAX_KEY_LENGTH} characters, got {length}"));
    }
    if let Some(bad) = key.chars().find(|c| !is_key_char(*c)) {
        return Err(format!("{bad:?} is not allowed in a key; use A-Z, a-z, 0-9, '.', '_', '/' and '-'"));
    }
    Ok(())
}

/// Check a job's labels; an error is the field at fault (`labels`, or `labels.<key>` for a value) and what is
/// wrong with it.
pub fn validate_labels(labels: &Labels) -> Result<(), (String, String)> {
    if labels.len() > MAX_LABELS {
        return Err(("labels".into(), format!("has {} labels; at most {MAX_LABELS} are allowed", labels.len())));
    }
    for (key, value) in labels {
        validate_key(key).map_err(|message| ("labels".to_string(), format!("key {key:?}: {message}")))?;
        let length = value.chars().count();
        if length > MAX_VALUE_LENGTH {
            return Err((format!("labels.{key}"), format!("is {length} characters; at most {MAX_VALUE_LENGTH}")));
        }
    }
    Ok(())
}

/// What a requirement asks of one label. `key=value` is `In` one value, `key!=value` is `NotIn` one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// The job has the label, with one of these values.
    In(Vec<String>),
    /// The job has not the label, or has it with none of these values.
    NotIn(Vec<String>),
    /// The job has the label, whatever its value.
    Exists,
    /// The job has not the label.
    DoesNotExist,
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label's key.
    pub key: String,
    /// What it asks of the label.
    pub operator: Operator,
}

impl Requirement {
    /// True when `labels` meet it.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            Operator::In(values) => value.is_some_and(|value| values.contains(value)),
            Operator::NotIn(values) => value.is_none_or(|value| !values.contains(value)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }

    /// True when only a job that has the label can meet it (`In`, `Exists`); the others (`NotIn`,
    /// `DoesNotExist`) are met by every job without it.
    pub fn needs_label(&self) -> bool {
        matches!(self.operator, Operator::In(_) | Operator::Exists)
    }
}

/// A label selector: comma-separated requirements, all of which must hold. The empty selector selects every job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// All must hold.
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// Parse a selector as Kubernetes writes them: `key=value`, `key==value`, `key!=value`, `key in (a,b)`,
    /// `key notin (a,b)`, `key`, `!key`, separated by commas. An error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let length = text.chars().count();
        if length > MAX_SELECTOR_LENGTH {
            return Err(format!("is {length} characters; at most {MAX_SELECTOR_LENGTH}"));
        }
        let mut parser = Parser { text, at: 0 };
        let mut requirements = Vec::new();
        parser.skip_space();
        if parser.rest().is_empty() {
            return Ok(Selector { requirements });
        }
        loop {
            if requirements.len() == MAX_REQUIREMENTS {
                return Err(format!("has more than {MAX_REQUIREMENTS} requirements"));
            }
            requirements.push(parser.requirement()?);
            parser.skip_space();
            if parser.rest().is_empty() {
                return Ok(Selector { requirements });
            }
            if !parser.eat(",") {
                return Err(parser.unexpected("',' between requirements"));
            }
            parser.skip_space();
        }
    }

    /// True when `labels` meet every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|requirement| requirement.matches(labels))
    }

    /// True for the selector without requirements, which selects every job.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(text: &str) -> Result<Selector, String> {
        Selector::parse(text)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.operator {
            Operator::In(values) if values.len() == 1 => write!(f, "{key}={}", values[0]),
            Operator::NotIn(values) if values.len() == 1 => write!(f, "{key}!={}", values[0]),
            Operator::In(values) => write!(f, "{key} in ({})", values.join(",")),
            Operator::NotIn(values) => write!(f, "{key} notin ({})", values.join(",")),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

/// As a selector reads, in a canonical form (`key=value` for one value, `key in (a,b)` for more).
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset of what is left.
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    /// Skips spaces; true if there were any.
    fn skip_space(&mut self) -> bool {
        let skipped = self.rest().len() - self.rest().trim_start_matches(is_space).len();
        self.at += skipped;
        skipped > 0
    }

    fn eat(&mut self, token: &str) -> bool {
        let found = self.rest().starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }

    /// The longest run of characters at the start of what is left that `keep` keeps, consumed.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &str {
        let start = self.at;
        let length = self.rest().find(|c: char| !keep(c)).unwrap_or(self.rest().len());
        self.at += length;
        &self.text[start..self.at]
    }

    /// "expected X at character N, found Y".
    fn unexpected(&self, expected: &str) -> String {
        let position = self.text[..self.at].chars().count() + 1;
        match self.rest().chars().next() {
            Some(found) => format!("expected {expected} at character {position}, found {found:?}"),
            None => format!("expected {expected} at character {position}, found the end"),
        }
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.at;
        let key = self.take_while(is_key_char).to_string();
        if key.is_empty() {
            return Err(self.unexpected("a label key"));
        }
        if key.chars().count() > MAX_KEY_LENGTH {
            self.at = start;
            return Err(format!("the key {key:?} is longer than {MAX_KEY_LENGTH} characters"));
        }
        Ok(key)
    }

    fn value(&mut self) -> Result<String, String> {
        let value = self.take_while(|c| !ends_value(c)).to_string();
        if value.chars().count() > MAX_VALUE_LENGTH {
            return Err(format!("the value {value:?} is longer than {MAX_VALUE_LENGTH} characters"));
        }
        Ok(value)
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.eat("!") {
            self.skip_space();
            return Ok(Requirement { key: self.key()?, operator: Operator::DoesNotExist });
        }
        let key = self.key()?;
        let spaced = self.skip_space();
        let operator = if self.eat("==") || self.eat("=") {
            self.skip_space();
            Operator::In(vec![self.value()?])
        } else if self.eat("!=") {
            self.skip_space();
            Operator::NotIn(vec![self.value()?])
        } else {
            // `in` and `notin` are words, so they follow the key after a space; anything else after the key ends
            // the requirement (the caller expects a comma or the end).
            let word_at = self.at;
            let word = self.take_while(is_key_char).to_string();
            let negated = match word.as_str() {
                "in" if spaced => false,
                "notin" if spaced => true,
                _ => {
                    self.at = word_at;
                    return Ok(Requirement { key, operator: Operator::Exists });
                }
            };
            self.skip_space();
            if !self.eat("(") {
                return Err(self.unexpected(&format!("'(' after {word:?}")));
            }
            let mut values = Vec::new();
            loop {
                self.skip_space();
                values.push(self.value()?);
                self.skip_space();
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(self.unexpected("',' or ')' in the list of values"));
                }
            }
            if negated { Operator::NotIn(values) } else { Operator::In(values) }
        };
        Ok(Requirement { key, operator })
    }
}

/// The JSON Schema of a job's `labels`, for the OpenAPI document: what `validate_labels` enforces.
pub fn labels_schema() -> utoipa::openapi::Object {
    labels_object(utoipa::openapi::schema::Type::Object.into())
}

/// `labels_schema`, or null (a change that leaves the labels as they are).
pub fn optional_labels_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    labels_object(SchemaType::from_iter([Type::Object, Type::Null]))
}

fn labels_object(schema_type: utoipa::openapi::schema::SchemaType) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(schema_type)
        .description(Some(
            "Labels, as Kubernetes has them: at most 32, keys of 1–63 characters of `[A-Za-z0-9._/-]`, values of at \
             most 63 characters. Select jobs by them with a `selector`.",
        ))
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some(KEY_PATTERN))))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String).max_length(Some(MAX_VALUE_LENGTH))))
        .max_properties(Some(MAX_LABELS))
        .build()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    fn req(key: &str, operator: Operator) -> Requirement {
        Requirement { key: key.to_string(), operator }
    }

    fn values(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn every_form_parses() {
        let selector = Selector::parse(
            " team=payments, tier == gold,env!=prod, zone in (eu, us ,),stage notin(dev),backup,! legacy ,k8s.io/app",
        )
        .unwrap();
        assert_eq!(
            selector.requirements,
            vec![
                req("team", Operator::In(values(&["payments"]))),
                req("tier", Operator::In(values(&["gold"]))),
                req("env", Operator::NotIn(values(&["prod"]))),
                req("zone", Operator::In(values(&["eu", "us", ""]))),
                req("stage", Operator::NotIn(values(&["dev"]))),
                req("backup", Operator::Exists),
                req("legacy", Operator::DoesNotExist),
                req("k8s.io/app", Operator::Exists),
            ]
        );
        assert_eq!(
            selector.to_string(),
            "team=payments,tier=gold,env!=prod,zone in (eu,us,),stage!=dev,backup,!legacy,k8s.io/app"
        );
        assert_eq!(Selector::parse(&selector.to_string()).unwrap(), selector);
    }

    #[test]
    fn the_empty_selector_selects_everything() {
        for text in ["", "  ", "\t"] {
            let selector = Selector::parse(text).unwrap();
            assert!(selector.is_empty() && selector.matches(&Labels::new()));
        }
        // An empty value is a value: `key=` asks for the label with an empty value.
        assert_eq!(Selector::parse("a=").unwrap().requirements, vec![req("a", Operator::In(values(&[""])))]);
        // `in` is only a word after a space; a key may be called `in`.
        assert_eq!(Selector::parse("in in (in)").unwrap().requirements, vec![req("in", Operator::In(values(&["in"])))]);
        assert_eq!(Selector::parse("in").unwrap().requirements, vec![req("in", Operator::Exists)]);
    }

    #[test]
    fn malformed_selectors_say_where() {
        for (text, says) in [
            ("a,", "expected a label key at character 3, found the end"),
            (",a", "expected a label key at character 1, found ','"),
            ("a,,b", "expected a label key at character 3"),
            ("a b", "expected ',' between requirements at character 3, found 'b'"),
            ("a=b=c", "expected ',' between requirements at character 4, found '='"),
            ("a in b", "expected '(' after \"in\" at character 6, found 'b'"),
            ("a in (b", "expected ',' or ')' in the list of values at character 8, found the end"),
            ("a in (b c)", "expected ',' or ')' in the list of values at character 9, found 'c'"),
            ("a notin", "expected '(' after \"notin\" at character 8, found the end"),
            ("a in(b),", "expected a label key at character 9"),
            ("ain(b)", "expected ',' between requirements at character 4, found '('"),
            ("a!b", "expected ',' between requirements at character 2, found '!'"),
            ("!", "expected a label key at character 2, found the end"),
            ("!a=b", "expected ',' between requirements at character 3, found '='"),
            ("a b=c", "expected ',' between requirements at character 3, found 'b'"),
            ("team: payments", "expected ',' between requirements at character 5, found ':'"),
            ("é=1", "expected a label key at character 1, found 'é'"),
            ("a=(b)", "expected ',' between requirements at character 3, found '('"),
        ] {
            let err = Selector::parse(text).unwrap_err();
            assert!(err.starts_with(says), "{text:?}: {err}");
        }
        let long_key = "k".repeat(64);
        assert!(Selector::parse(&long_key).unwrap_err().contains("longer than 63"));
        assert!(Selector::parse(&format!("a={}", "v".repeat(64))).unwrap_err().contains("longer than 63"));
        assert!(Selector::parse(&format!("a={}", "v".repeat(63))).is_ok());
        let many = vec!["a"; MAX_REQUIREMENTS + 1].join(",");
        assert!(Selector::parse(&many).unwrap_err().contains("more than 64 requirements"));
        assert!(Selector::parse(&vec!["a"; MAX_REQUIREMENTS].join(",")).is_ok());
        let long = format!("a in ({})", vec!["x"; MAX_SELECTOR_LENGTH].join(","));
        assert!(Selector::parse(&long).unwrap_err().contains("at most 4096"));
    }

    #[test]
    fn requirements_on_a_missing_label_follow_kubernetes() {
        let none = Labels::new();
        let gold = labels(&[("tier", "gold")]);
        let silver = labels(&[("tier", "silver")]);
        let cases = [
            ("tier=gold", [false, true, false]),
            ("tier!=gold", [true, false, true]),
            ("tier in (gold,bronze)", [false, true, false]),
            ("tier notin (gold,bronze)", [true, false, true]),
            ("tier", [false, true, true]),
            ("!tier", [true, false, false]),
            ("tier,tier!=silver", [false, true, false]),
            ("tier=gold,tier=silver", [false, false, false]),
        ];
        for (text, expected) in cases {
            let selector = Selector::parse(text).unwrap();
            let got = [&none, &gold, &silver].map(|labels| selector.matches(labels));
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn labels_are_checked_and_errors_name_the_field() {
        assert_eq!(validate_labels(&labels(&[("team", "payments"), ("k8s.io/app-name_1", ""), ("a", "")])), Ok(()));
        let (field, message) = validate_labels(&labels(&[("bad key", "x")])).unwrap_err();
        assert_eq!(field, "labels");
        assert!(message.contains("\"bad key\"") && message.contains("' ' is not allowed"), "{message}");
        assert_eq!(validate_labels(&labels(&[("", "x")])).unwrap_err().0, "labels");
        assert_eq!(validate_labels(&labels(&[(&"k".repeat(64), "x")])).unwrap_err().0, "labels");
        assert_eq!(validate_labels(&labels(&[(&"k".repeat(63), "x")])), Ok(()));
        let long_value = "ü".repeat(64);
        let (field, message) = validate_labels(&labels(&[("team", &long_value)])).unwrap_err();
        assert_eq!((field.as_str(), message.as_str()), ("labels.team", "is 64 characters; at most 63"));
        assert_eq!(validate_labels(&labels(&[("team", &"ü".repeat(63))])), Ok(()));
        let many: Labels = (0..=MAX_LABELS).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(validate_labels(&many).unwrap_err().0, "labels");
        assert_eq!(validate_labels(&many.into_iter().skip(1).collect()), Ok(()));
    }

    /// Strings made of the selector grammar's pieces, most of them near-misses.
    fn selector_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("a".to_string()),
            Just("k8s.io/x-1".to_string()),
            Just("=".to_string()),
            Just("==".to_string()),
            Just("!=".to_string()),
            Just("!".to_string()),
            Just(",".to_string()),
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("\n".to_string()),
            Just("in".to_string()),
            Just("notin".to_string()),
            Just(" in ".to_string()),
            Just(" notin ".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just("ü".to_string()),
            Just(":".to_string()),
            Just("k".repeat(63)),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    /// The patterns, compiled once: with their counted repetitions they are larger than the regex crate's default
    /// size limit.
    static PATTERNS: std::sync::LazyLock<(regex::Regex, regex::Regex)> = std::sync::LazyLock::new(|| {
        let compile = |pattern| regex::RegexBuilder::new(pattern).size_limit(1 << 30).build().unwrap();
        (compile(SELECTOR_PATTERN), compile(NON_EMPTY_SELECTOR_PATTERN))
    });

    proptest! {
        /// The OpenAPI document's pattern and the parser accept the same selectors.
        #[test]
        fn the_pattern_and_the_parser_agree(text in selector_like()) {
            let (pattern, non_empty) = &*PATTERNS;
            prop_assert_eq!(pattern.is_match(&text), Selector::parse(&text).is_ok(), "{:?}", text);
            let parsed = Selector::parse(&text).map(|selector| !selector.is_empty()).unwrap_or(false);
            prop_assert_eq!(non_empty.is_match(&text), parsed, "{:?}", text);
        }
    }
}
