//! `terraform-provider-hsw`: run by Terraform. See [`terraform_provider_hsw::protocol::serve`].

use std::process::ExitCode;

use terraform_provider_hsw::protocol::{serve, ServeOptions};
use terraform_provider_hsw::{hsw::HswProvider, PROVIDER_ADDRESS};

fn main() -> ExitCode {
    serve(
        HswProvider::default(),
        &ServeOptions::new(PROVIDER_ADDRESS, env!("CARGO_PKG_VERSION")),
    )
}
