//! Compiles `proto/ledger.proto` with protox (pure Rust: no system `protoc`) into the
//! messages and the tonic client, with prost's codec. Also writes the server stubs the
//! tests serve (`OUT_DIR/test_server`); only the tests include them.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto = proto_dir.join("ledger.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [&proto_dir])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds.clone())?;
    // The tests' fake nodes: the server trait over this crate's messages, every method
    // UNIMPLEMENTED unless a test overrides it (so a new RPC in the proto costs nothing).
    let test_server = PathBuf::from(std::env::var("OUT_DIR")?).join("test_server");
    std::fs::create_dir_all(&test_server)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .generate_default_stubs(true)
        .out_dir(&test_server)
        .extern_path(".roda.ledger.v1", "::ledger_client::pb")
        .compile_fds(fds)?;
    Ok(())
}
