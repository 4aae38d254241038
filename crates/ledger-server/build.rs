//! Compiles `proto/ledger.proto` with protox (pure Rust: no system `protoc`), generates
//! the tonic server over `ledger-client`'s messages (one set of message types in the
//! workspace), and keeps the descriptor set for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto = proto_dir.join("ledger.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [&proto_dir])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("ledger_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // The server only, whose codec answers undecodable requests with INVALID_ARGUMENT
    // (src/codec.rs). The messages and the client are ledger-client's.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .codec_path("crate::codec::RequestCodec")
        // The change stream's batches go out already encoded (src/subscribe.rs).
        .extern_path(
            ".roda.ledger.v1.TransactionBatch",
            "crate::subscribe::EncodedBatch",
        )
        .extern_path(".roda.ledger.v1", "::ledger_client::pb")
        .compile_fds(fds)?;
    compile_cluster(&proto_dir)
}

/// `proto/raft.proto`: node-to-node traffic of a cluster, server and client both (a node
/// is each), into `pb::cluster`.
fn compile_cluster(proto_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let proto = proto_dir.join("raft.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [proto_dir])?;
    // Frames as `Bytes`: a follower's copy of the leader's records is a slice of the
    // buffer it received them in, and the leader sends its own without copying.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".roda.ledger.cluster.v1.Frame.payload")
        .compile_fds(fds)?;
    Ok(())
}
