//! STUB (replaced by the ctk-probes branch).
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub values: Map<String, Value>,
}

impl Vars {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
    pub fn insert(&mut self, name: impl Into<String>, v: Value) {
        self.values.insert(name.into(), v);
    }
}

pub fn substitute(v: &Value, _vars: &Vars) -> Value {
    v.clone()
}

pub fn substitute_str(s: &str, _vars: &Vars) -> Value {
    Value::String(s.to_string())
}

pub fn names_in(_s: &str) -> Vec<String> {
    Vec::new()
}
