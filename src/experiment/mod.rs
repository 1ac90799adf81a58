//! Running chaostoolkit experiment files.

pub mod http;
pub mod substitute;
pub mod tolerance;
