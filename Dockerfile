# infermesh: one binary for the gateway, the sidecar, the embedded model server and
# `export`. Multi-stage: build with the Rust toolchain, run on distroless (glibc,
# libgcc, CA certificates; no shell), as a non-root user.
#
#   docker build -t infermesh:0.1.0 .
#   docker run --rm infermesh:0.1.0 export k8s --config /usr/share/infermesh/examples/kubernetes/mesh.yaml
#
# The Kubernetes manifests (deploy/k8s, `infermesh export k8s`) use this image as
# `infermesh:0.1.0`; push it to your registry and set the image in an overlay.

FROM rust:1.91-bookworm AS build
WORKDIR /src
COPY . .
# Protobufs compile with protox (pure Rust): no protoc needed.
RUN cargo build --release --locked -p infermesh \
 && install -D -m 0755 target/release/infermesh /out/infermesh

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/infermesh /usr/local/bin/infermesh
COPY examples /usr/share/infermesh/examples
# State (CA keys, audit log) goes under .infermesh/ of the working directory:
# Kubernetes mounts an emptyDir or a volume at /var/lib/infermesh and makes it the
# working directory (the root file system stays read-only).
WORKDIR /home/nonroot
USER 65532:65532
EXPOSE 8500 8501 15006 15020
ENTRYPOINT ["infermesh"]
