pub mod ansible;
pub mod config;
pub mod diag;
pub mod gpu;
pub mod host;
pub mod layout;
pub mod render;
pub mod slurm;
