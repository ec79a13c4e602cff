//! Compiles the protos with protox (pure Rust), so no system `protoc` is needed.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/reconciler/agent/v2/common.proto",
        "proto/reconciler/agent/v2/mailcow.proto",
        "proto/reconciler/agent/v2/sogo.proto",
        "proto/reconciler/agent/v2/nextcloud.proto",
        "proto/reconciler/agent/v2/matrix.proto",
        "proto/reconciler/agent/v2/stalwart.proto",
        "proto/reconciler/coordinator/v2/coordinator.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // Server reflection serves this descriptor set. `compile_fds` does not
    // write it (that is protoc's job), so encode it ourselves.
    std::fs::write(
        out_dir.join("reconciler_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
