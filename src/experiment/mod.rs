//! Running chaostoolkit experiment files.

pub mod substitute;
pub mod tolerance;
