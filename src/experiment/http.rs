//! STUB (replaced by the ctk-probes branch).
use std::time::Duration;

use serde_json::Value;

pub struct HttpRequest {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub arguments: Option<Value>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub verify_tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("stub: {0}")]
    Stub(String),
}

pub async fn call(req: &HttpRequest) -> Result<Value, HttpError> {
    Err(HttpError::Stub(req.url.clone()))
}
