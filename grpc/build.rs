//! Compiles proto/ into prost messages and tonic server stubs, and writes the encoded
//! FileDescriptorSet that server reflection serves. protox parses the .proto files in Rust, so
//! the build needs no protoc on the machine.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "rekor/v2/rekor_service.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("rekor_descriptor.bin"), encoded)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
