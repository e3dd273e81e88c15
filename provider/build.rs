//! Compiles the vendored tfplugin6 and go-plugin protocol definitions.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_transport(false)
        .build_server(true)
        .compile_protos(
            &["proto/tfplugin6.5.proto", "proto/go_plugin.proto"],
            &["proto"],
        )?;
    Ok(())
}
