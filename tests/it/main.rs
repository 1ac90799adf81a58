//! The one integration-test binary: each module covers one capability.

mod common;

mod cli_files;
mod load;
