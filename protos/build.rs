//! Compiles the gRPC contracts with protox (pure Rust), so no system `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/voiceagent/v1/messaging.proto",
        "proto/voiceagent/v1/contacts.proto",
        "proto/voiceagent/v1/campaigns.proto",
        "proto/voiceagent/v1/calls.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let file_descriptors = protox::compile(protos, ["proto"])?;
    let descriptor_path = out_dir.join("voiceagent_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&file_descriptors),
    )?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_fds(file_descriptors)?;
    Ok(())
}
