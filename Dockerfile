# syntax=docker/dockerfile:1
# The bkops operator image: a static-ish Rust binary on distroless (glibc, CA roots, no shell),
# running as the distroless "nonroot" user 65532 with nothing writable needed.
#
#   docker build -t ghcr.io/bkops/bkops:0.1.0 .
#
# The dependency layer is built from Cargo.toml/Cargo.lock alone, so source edits rebuild only
# the crate itself.

FROM docker.io/library/rust:1.95-bookworm AS builder
WORKDIR /src

# 1. Dependencies only: a stub crate with the real manifest and lock file.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && echo '' > src/lib.rs \
    && cargo build --release --locked --bin bkops \
    && rm -rf src target/release/bkops target/release/deps/bkops-* target/release/deps/libbkops-* \
       target/release/.fingerprint/bkops-*

# 2. The crate.
COPY src ./src
RUN cargo build --release --locked --bin bkops \
    && install -D -m 0755 target/release/bkops /out/bkops \
    && ln -s bkops /out/kubectl-bkops

# /kubectl-bkops is the same binary under the kubectl plugin's name (a link: the binary reads its
# name): `docker run --rm --entrypoint /kubectl-bkops -v ~/.kube:/home/nonroot/.kube:ro IMAGE get -A`.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ /
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/bkops"]
CMD ["run"]
