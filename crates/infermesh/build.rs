//! Link setting for the `infermesh` binary: relative relocations packed in the
//! compact RELR format (`-z pack-relative-relocs`, GNU ld ≥ 2.38 / lld; glibc ≥ 2.36
//! loads them). The binary is position-independent, and its ~99,000 relative
//! relocations take 2.3 MB as classic RELA entries, all of which the dynamic loader
//! reads at start-up: that is 2.3 MB of every process's resident memory. RELR
//! encodes the same relocations in a few tens of kilobytes (bench/README.md,
//! "Relocations"). A linker that does not know the option ignores it with a warning.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
