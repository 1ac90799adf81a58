//! Running chaostoolkit experiment files.

pub mod substitute;
