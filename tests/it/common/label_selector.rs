//! Label selectors as kube-apiserver parses and matches them
//! (k8s.io/apimachinery/pkg/labels/selector.go): `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
//! `a notin (x,y)`, `a`, `!a`, `a>1`, `a<1`, comma-separated (AND). A malformed
//! selector is an error whose text is the apiserver's, for a 400 Status.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// One requirement.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

/// A parsed selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector(Vec<(String, Op)>);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Not,
    NotEq,
    Eq,
    DoubleEq,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
    End,
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Not => "!".into(),
            Tok::NotEq => "!=".into(),
            Tok::Eq => "=".into(),
            Tok::DoubleEq => "==".into(),
            Tok::In => "in".into(),
            Tok::NotIn => "notin".into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Gt => ">".into(),
            Tok::Lt => "<".into(),
            Tok::End => String::new(),
        }
    }
}

fn special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if special(c) {
            let two = cs.get(i + 1).copied();
            let (t, n) = match (c, two) {
                ('!', Some('=')) => (Tok::NotEq, 2),
                ('=', Some('=')) => (Tok::DoubleEq, 2),
                ('!', _) => (Tok::Not, 1),
                ('=', _) => (Tok::Eq, 1),
                ('(', _) => (Tok::Open, 1),
                (')', _) => (Tok::Close, 1),
                (',', _) => (Tok::Comma, 1),
                ('>', _) => (Tok::Gt, 1),
                _ => (Tok::Lt, 1),
            };
            out.push(t);
            i += n;
            continue;
        }
        let start = i;
        while i < cs.len() && !cs[i].is_whitespace() && !special(cs[i]) {
            i += 1;
        }
        let word: String = cs[start..i].iter().collect();
        out.push(match word.as_str() {
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            _ => Tok::Ident(word),
        });
    }
    out.push(Tok::End);
    out
}

fn name_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn dns_subdomain_ok(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// `IsQualifiedName`: `[prefix/]name`.
fn key_ok(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => dns_subdomain_ok(prefix) && name_ok(name),
        None => name_ok(k),
    }
}

/// `IsValidLabelValue`: empty, or a name of at most 63 characters.
fn value_ok(v: &str) -> bool {
    v.is_empty() || name_ok(v)
}

struct P {
    toks: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).unwrap_or(&Tok::End)
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn requirement(&mut self) -> Result<(String, Op), String> {
        let negated = *self.peek() == Tok::Not;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Tok::Ident(k) => k,
            t => {
                return Err(format!("found '{}', expected: identifier", t.text()));
            }
        };
        if !key_ok(&key) {
            return Err(format!(
                "unable to parse requirement: key: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            ));
        }
        if negated {
            return Ok((key, Op::DoesNotExist));
        }
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Ok((key, Op::Exists));
        }
        let op = self.next();
        let op = match op {
            Tok::Eq | Tok::DoubleEq | Tok::NotEq => {
                let v = match self.peek().clone() {
                    Tok::End | Tok::Comma => String::new(),
                    Tok::Ident(v) => {
                        self.next();
                        v
                    }
                    t => {
                        return Err(format!("found '{}', expected: identifier", t.text()));
                    }
                };
                if op == Tok::NotEq {
                    Op::NotIn(vec![v])
                } else {
                    Op::In(vec![v])
                }
            }
            Tok::In | Tok::NotIn => {
                let vs = self.values()?;
                if vs.is_empty() {
                    return Err(
                        "unable to parse requirement: values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty".into(),
                    );
                }
                if op == Tok::In {
                    Op::In(vs)
                } else {
                    Op::NotIn(vs)
                }
            }
            Tok::Gt | Tok::Lt => {
                let v = match self.next() {
                    Tok::Ident(v) => v,
                    t => return Err(format!("found '{}', expected: identifier", t.text())),
                };
                let Ok(n) = v.parse::<i64>() else {
                    return Err(format!(
                        "unable to parse requirement: values[0]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                    ));
                };
                if op == Tok::Gt { Op::Gt(n) } else { Op::Lt(n) }
            }
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.text()
                ));
            }
        };
        if let Op::In(vs) | Op::NotIn(vs) = &op {
            for (n, v) in vs.iter().enumerate() {
                if !value_ok(v) {
                    return Err(format!(
                        "unable to parse requirement: values[{n}][{key}]: Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                    ));
                }
            }
        }
        Ok((key, op))
    }

    /// `( v1, v2 )` — empty strings between commas count as values.
    fn values(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Tok::Open => {}
            t => return Err(format!("found '{}', expected: '('", t.text())),
        }
        let mut out = Vec::new();
        if *self.peek() == Tok::Close {
            self.next();
            return Ok(out);
        }
        let mut want_value = true;
        loop {
            match self.next() {
                Tok::Ident(v) if want_value => {
                    out.push(v);
                    want_value = false;
                }
                Tok::Comma => {
                    if want_value {
                        out.push(String::new());
                    }
                    want_value = true;
                }
                Tok::Close => {
                    if want_value {
                        out.push(String::new());
                    }
                    return Ok(out);
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.text()
                    ));
                }
            }
        }
    }
}

impl Selector {
    /// Parses as `labels.Parse` does; `Err` holds the apiserver's message.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = P { toks: lex(s), i: 0 };
        let mut reqs = Vec::new();
        loop {
            match p.peek() {
                Tok::End => return Ok(Self(reqs)),
                Tok::Ident(_) | Tok::Not => {
                    reqs.push(p.requirement()?);
                    match p.next() {
                        Tok::End => return Ok(Self(reqs)),
                        Tok::Comma => {
                            if !matches!(p.peek(), Tok::Ident(_) | Tok::Not) {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    p.peek().text()
                                ));
                            }
                        }
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.text()
                            ));
                        }
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.text()
                    ));
                }
            }
        }
    }

    /// Whether labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, op)| {
            let v = labels.get(k);
            match op {
                Op::In(vs) => v.is_some_and(|v| vs.contains(v)),
                Op::NotIn(vs) => v.is_none_or(|v| !vs.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                Op::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }

    /// Matches the `metadata.labels` of a JSON object.
    pub fn matches_object(&self, obj: &serde_json::Value) -> bool {
        let labels: BTreeMap<String, String> = obj
            .pointer("/metadata/labels")
            .and_then(serde_json::Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}

#[test]
fn selectors_parse_and_match_as_the_apiserver_does() {
    let l: BTreeMap<String, String> = [("app", "web"), ("tier", "front"), ("n", "5")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let m = |s: &str| Selector::parse(s).expect(s).matches(&l);
    assert!(m(""));
    assert!(m("app=web"));
    assert!(m("app==web"));
    assert!(m(" app = web , tier!=back "));
    assert!(!m("app!=web"));
    assert!(m("missing!=x"), "!= holds when the label is absent");
    assert!(m("app in (web, api)"));
    assert!(!m("app in (api)"));
    assert!(m("app notin (api),missing notin (x)"));
    assert!(m("app,!missing"));
    assert!(!m("!app"));
    assert!(m("n>4,n<6"));
    assert!(!m("app>4"));
    assert!(m("example.com/x notin (a)"));
    for bad in [
        "app=web,",
        "app=web,,tier",
        "app in ()",
        "app in web",
        "!app=web",
        "app=we b",
        "-app=web",
        "app=web)",
        "n>x",
        "a/b/c",
        "(",
    ] {
        assert!(Selector::parse(bad).is_err(), "{bad:?} must be refused");
    }
}
