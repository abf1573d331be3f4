//! Compiles every `.proto` under `proto/` with protox (pure Rust, no system protoc)
//! into prost messages and tonic clients and servers, and keeps the encoded
//! descriptor set for reflection (text-format config files).

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from("proto");
    println!("cargo:rerun-if-changed=proto");
    let mut files = Vec::new();
    collect(&root, &mut files);
    let relative: Vec<PathBuf> = files
        .iter()
        .map(|p| p.strip_prefix(&root).expect("under proto/").to_path_buf())
        .collect();
    let descriptors = protox::compile(&relative, [&root]).expect("compiling protos");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("descriptors.bin"), encoded).expect("writing descriptors");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)
        .expect("generating code");
}
