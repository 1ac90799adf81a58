//! Reading Kubernetes manifests (multi-document YAML or JSON) into JSON values, keeping
//! key order, every unknown field, and the source line of each node so that errors can
//! point at `file:line`.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

/// Files larger than this are refused before parsing: the Kubernetes API server refuses
/// request bodies over 3 MiB (and etcd objects over 1.5 MiB), so no real manifest is larger.
pub const MAX_MANIFEST_BYTES: usize = 3 * 1024 * 1024;

/// Where a manifest came from: a file path, or a label such as `<stdin>` or a cluster
/// object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source(pub String);

impl Source {
    pub fn file(p: &Path) -> Self {
        if is_stdin(p) {
            return Self(STDIN_NAME.into());
        }
        Self(p.display().to_string())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors reading a manifest; each names the source and, where known, the line.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read. The cause is part of the message and not a
    /// `source()` too, so that a `{:#}` chain does not print it twice.
    #[error("{source_name}: cannot read: {cause}")]
    Read { source_name: Source, cause: String },
    /// The file holds no document (empty, or only comments and `---`).
    #[error("{source_name}: no manifest: the file is empty or holds only comments and `---`")]
    Empty { source_name: Source },
    /// The file is not text.
    #[error(
        "{source_name}: not a YAML or JSON manifest: the file is not UTF-8 text (byte {offset})"
    )]
    NotText { source_name: Source, offset: usize },
    /// The file is too large to be a manifest.
    #[error(
        "{source_name}: more than {MAX_MANIFEST_BYTES} bytes: too large for a manifest (the Kubernetes API server refuses larger objects)"
    )]
    TooLarge { source_name: Source },
    /// YAML syntax error.
    #[error("{source_name}:{line}:{column}: invalid YAML: {message}")]
    Syntax {
        source_name: Source,
        line: u64,
        column: u64,
        message: String,
    },
    /// A document is not an object with apiVersion/kind.
    #[error("{source_name}:{line}: document {index} is not a Kubernetes object: {why}")]
    NotObject {
        source_name: Source,
        line: u64,
        index: usize,
        why: String,
    },
}

/// One document of a manifest file.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    /// 0-based index of the document in its file.
    pub index: usize,
    pub value: Value,
    lines: HashMap<String, u64>,
    /// Line the document starts on.
    pub start_line: u64,
}

impl Document {
    /// Wraps a value that did not come from a file (e.g. read from a cluster).
    pub fn from_value(source: Source, value: Value) -> Self {
        Self {
            source,
            index: 0,
            value,
            lines: HashMap::new(),
            start_line: 0,
        }
    }

    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }

    pub fn is_virtual_service(&self) -> bool {
        self.kind() == "VirtualService" && self.api_version().starts_with("networking.istio.io/")
    }

    /// Line of the node at `pointer` (RFC 6901), or of its nearest ancestor that has one.
    pub fn line_of(&self, pointer: &str) -> Option<u64> {
        let mut p = pointer;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return (self.start_line > 0).then_some(self.start_line),
            }
        }
    }

    /// `file:line` (or just the source) for the node at `pointer`.
    pub fn locate(&self, pointer: &str) -> String {
        match self.line_of(pointer) {
            Some(l) => format!("{}:{l}", self.source),
            None => self.source.to_string(),
        }
    }
}

/// How standard input is named in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// Whether `path` means standard input (`-f -`, kubectl's habit).
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads all of `r` if it holds at most `limit` bytes, else `None` — having read only
/// `limit` + 1 bytes, so `/dev/zero` or an endless pipe is refused instead of filling
/// memory. Shared by every bounded read (manifests, `load --body-file`).
pub fn read_at_most(r: impl Read, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    r.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= limit).then_some(bytes))
}

/// Reads at most [`MAX_MANIFEST_BYTES`]: more is refused after 3 MiB.
fn read_bounded(r: impl Read, source: &Source) -> Result<Vec<u8>, ManifestError> {
    read_at_most(r, MAX_MANIFEST_BYTES)
        .map_err(|e| ManifestError::Read {
            source_name: source.clone(),
            cause: io_cause(&e),
        })?
        .ok_or_else(|| ManifestError::TooLarge {
            source_name: source.clone(),
        })
}

/// An I/O error in words, without Rust's `(os error N)` suffix.
pub fn io_cause(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "no such file".into(),
        K::PermissionDenied => "permission denied".into(),
        K::IsADirectory => "it is a directory, not a file".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// The bytes of a manifest file, or of standard input for `-` (read once per process
/// and kept, so that several readers of `-` see the same text).
pub fn read_source(path: &Path) -> Result<(Vec<u8>, Source), ManifestError> {
    let source = Source::file(path);
    if is_stdin(path) {
        static STDIN: OnceLock<Result<Vec<u8>, ManifestError>> = OnceLock::new();
        let read = STDIN.get_or_init(|| read_bounded(std::io::stdin().lock(), &source));
        return match read {
            Ok(b) => Ok((b.clone(), source)),
            Err(e) => Err(e.clone()),
        };
    }
    let f = std::fs::File::open(path).map_err(|e| ManifestError::Read {
        source_name: source.clone(),
        cause: io_cause(&e),
    })?;
    let bytes = read_bounded(f, &source)?;
    Ok((bytes, source))
}

/// Reads a manifest file (`-`: standard input).
pub fn read_file(path: &Path) -> Result<Vec<Document>, ManifestError> {
    let (bytes, source) = read_source(path)?;
    parse_bytes(&bytes, source)
}

/// Parses manifest bytes: YAML (one or more documents) or JSON (one object, or a
/// `kind: List` whose items are expanded).
pub fn parse_bytes(bytes: &[u8], source: Source) -> Result<Vec<Document>, ManifestError> {
    let text = checked_text(bytes, &source)?;
    parse_str(text, source)
}

/// The bytes as text, within the manifest limits (size, UTF-8, no NUL).
fn checked_text<'a>(bytes: &'a [u8], source: &Source) -> Result<&'a str, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            source_name: source.clone(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ManifestError::NotText {
        source_name: source.clone(),
        offset: e.valid_up_to(),
    })?;
    if let Some(offset) = text.find('\0') {
        return Err(ManifestError::NotText {
            source_name: source.clone(),
            offset,
        });
    }
    Ok(text)
}

/// Parses YAML or JSON documents of any shape (not only Kubernetes objects), with the
/// line of every node: for files that are not manifests (chaostoolkit experiments).
pub fn parse_plain(text: &str, source: Source) -> Result<Vec<Document>, ManifestError> {
    let nodes: Vec<Spanned<Node>> =
        serde_saphyr::from_multiple(text).map_err(|e| syntax_error(&e, &source))?;
    let mut docs = Vec::new();
    for (index, node) in nodes.into_iter().enumerate() {
        let start_line = node.referenced.line();
        let mut lines = HashMap::new();
        let value = node.value.into_json(String::new(), start_line, &mut lines);
        if value.is_null() {
            continue;
        }
        docs.push(Document {
            source: source.clone(),
            index,
            value,
            lines,
            start_line,
        });
    }
    Ok(docs)
}

/// Reads a file of any YAML/JSON shape (see [`parse_plain`]), with the manifest limits.
pub fn read_plain(path: &Path) -> Result<Vec<Document>, ManifestError> {
    let (bytes, source) = read_source(path)?;
    let text = checked_text(&bytes, &source)?;
    parse_plain(text, source)
}

pub fn parse_str(text: &str, source: Source) -> Result<Vec<Document>, ManifestError> {
    let mut docs = Vec::new();
    // Empty documents (e.g. a trailing `---`) are already skipped.
    let plain_docs = parse_plain(text, source.clone())?;
    if plain_docs.is_empty() {
        return Err(ManifestError::Empty {
            source_name: source,
        });
    }
    for plain in plain_docs {
        let Document {
            index,
            value,
            lines,
            start_line,
            ..
        } = plain;
        let not_object = |why: String| ManifestError::NotObject {
            source_name: source.clone(),
            line: start_line,
            index,
            why,
        };
        let Value::Object(map) = &value else {
            return Err(not_object(format!(
                "expected a mapping with apiVersion and kind, found {}",
                json_type(&value)
            )));
        };
        for key in ["apiVersion", "kind"] {
            if !map.get(key).is_some_and(Value::is_string) {
                return Err(not_object(format!("missing string field `{key}`")));
            }
        }
        // kubectl's `kind: List` (what `kubectl get -o yaml` prints for several objects).
        if map.get("kind").and_then(Value::as_str) == Some("List")
            && let Some(Value::Array(items)) = map.get("items")
        {
            for (i, item) in items.iter().enumerate() {
                let prefix = format!("/items/{i}");
                let sub: HashMap<String, u64> = lines
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix(&prefix)
                            .filter(|r| r.is_empty() || r.starts_with('/'))
                            .map(|r| (r.to_string(), *v))
                    })
                    .collect();
                docs.push(Document {
                    source: source.clone(),
                    index: docs.len(),
                    value: item.clone(),
                    start_line: sub.get("").copied().unwrap_or(start_line),
                    lines: sub,
                });
            }
            continue;
        }
        docs.push(Document {
            source: source.clone(),
            index: docs.len(),
            value,
            lines,
            start_line,
        });
    }
    Ok(docs)
}

fn syntax_error(e: &serde_saphyr::Error, source: &Source) -> ManifestError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    // The first line of the crate's message is the reason; the rest is a source snippet.
    let full = e.to_string();
    let mut message = full
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("syntax error")
        .trim();
    // The location is printed by us as file:line:column; drop the crate's own copy.
    message = message.strip_prefix("error: ").unwrap_or(message);
    if let Some(rest) = message.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        message = after;
    }
    let message = user_words(message);
    ManifestError::Syntax {
        source_name: source.clone(),
        line,
        column,
        message,
    }
}

/// The YAML parser's message in a user's words: no parser options or Rust debug output.
fn user_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("duplicate key `{key}` (a key may appear only once in a mapping)");
    }
    if message.starts_with("budget breached") {
        let what = if message.contains("Depth") {
            "the file is nested too deeply"
        } else if message.contains("Alias") || message.contains("Anchor") {
            "the file uses too many YAML aliases or anchors"
        } else {
            "the file holds too many values"
        };
        return format!("{what} to be a Kubernetes manifest");
    }
    if message.contains("recursion limit exceeded") {
        return "the file is nested too deeply to be a Kubernetes manifest".into();
    }
    message.to_string()
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Escapes one RFC 6901 pointer segment.
pub fn escape_pointer(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

/// Prints documents as YAML (several separated by `---`) or JSON.
pub fn to_yaml(values: &[&Value]) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match serde_saphyr::to_string(v) {
            Ok(s) => out.push_str(&s),
            // Serializing a JSON value to YAML cannot fail for the value types JSON has.
            Err(e) => out.push_str(&format!("# cannot render as YAML: {e}\n")),
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

// === impl Node ===

/// A YAML node with the location of each child, read in one pass.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(String, Spanned<Node>)>),
}

impl Node {
    fn into_json(self, ptr: String, line: u64, lines: &mut HashMap<String, u64>) -> Value {
        lines.insert(ptr.clone(), line);
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(i) => Value::from(i),
            Node::UInt(u) => Value::from(u),
            Node::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Node::Str(s) => Value::String(s),
            Node::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let l = n.referenced.line();
                        n.value.into_json(format!("{ptr}/{i}"), l, lines)
                    })
                    .collect(),
            ),
            Node::Map(entries) => {
                let mut m = Map::new();
                for (k, n) in entries {
                    let l = n.referenced.line();
                    let child = format!("{ptr}/{}", escape_pointer(&k));
                    m.insert(k, n.value.into_json(child, l, lines));
                }
                Value::Object(m)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Float(v as f64))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Float(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Spanned<Node>)> = Vec::new();
        while let Some(key) = map.next_key::<KeyString>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            if entries.iter().any(|(k, _)| *k == key.0) {
                return Err(de::Error::custom(format!("duplicate key {:?}", key.0)));
            }
            entries.push((key.0, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key: any scalar, as its string form (JSON object keys are strings).
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyString, E> {
                Ok(KeyString("null".to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_order_are_kept() {
        let src = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n  zeta: 1\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n";
        let docs = parse_str(src, Source("t.yaml".into())).expect("parse");
        assert_eq!(docs.len(), 2);
        let vs = &docs[0];
        assert!(vs.is_virtual_service());
        let keys: Vec<_> = vs.value["spec"]
            .as_object()
            .expect("obj")
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["zeta", "hosts", "http"]);
        assert_eq!(vs.line_of("/spec/zeta"), Some(6));
        assert_eq!(vs.line_of("/spec/http/0"), Some(9));
        assert_eq!(
            vs.line_of("/spec/http/0/route/0/destination/host"),
            Some(10)
        );
        assert_eq!(docs[1].kind(), "Service");
        assert_eq!(docs[1].start_line, 12);
    }

    #[test]
    fn json_and_lists() {
        let src = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"networking.istio.io/v1beta1","kind":"VirtualService","metadata":{"name":"a"}}]}"#;
        let docs = parse_str(src, Source("t.json".into())).expect("parse");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].name(), "a");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for src in [
            "a: [",
            "- 1\n- 2\n",
            "just text",
            "apiVersion: v1\n",
            "a: 1\na: 2\n",
        ] {
            assert!(parse_str(src, Source("x".into())).is_err(), "{src:?}");
        }
        assert!(parse_bytes(b"\x00\x01\xff", Source("x".into())).is_err());
    }
}

#[cfg(test)]
mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(v: &Value) -> Value {
        let y = to_yaml(&[v]);
        let docs = parse_str(&y, Source("rt".into())).expect("re-parse");
        docs[0].value.clone()
    }

    #[test]
    fn ambiguous_strings_stay_strings() {
        let tricky = [
            "yes",
            "no",
            "on",
            "off",
            "true",
            "null",
            "~",
            "",
            "503",
            "1e3",
            "0x1F",
            "0o17",
            "- a",
            "a: b",
            "#x",
            "line1\nline2",
            " lead",
            "trail ",
            "*alias",
            "&anchor",
            "!tag",
            "%x",
            "@x",
            "`x",
            "{x}",
            "[x]",
            "2s",
            ".inf",
            "-.5",
            "+1",
            "'q'",
            "\"dq\"",
            "é ü",
            "tab\there",
        ];
        for s in tricky {
            let v = serde_json::json!({"apiVersion": "v1", "kind": "X", "data": {"k": s, s: 1}});
            assert_eq!(roundtrip(&v), v, "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn any_string_survives_yaml(s in "\\PC{0,20}", n in proptest::num::i64::ANY, f in -1e9f64..1e9) {
            let v = serde_json::json!({"apiVersion": "v1", "kind": "X", "data": {"s": s, "n": n, "f": f, "l": [s, n]}});
            prop_assert_eq!(roundtrip(&v), v);
        }
    }
}
