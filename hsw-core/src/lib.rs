pub mod config;
pub mod diag;
pub mod gpu;
pub mod host;
