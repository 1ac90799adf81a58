# syntax=docker/dockerfile:1
# meshdrill in a container: the CLI for in-cluster drills (deploy/drill-cronjob.yaml)
# and the load workers of `meshdrill load --workers N --in-cluster`.
#
#   docker build -t ghcr.io/meshdrill/meshdrill:0.1.0 .
#
# Stage 1 builds only the meshdrill binary (release, the locked dependency versions);
# stage 2 is distroless with glibc and CA certificates (for in-cluster HTTPS and the
# API server), no shell, running as the nonroot user (uid 65532).
FROM rust:1-bookworm AS build
WORKDIR /src
# What the binary is compiled from: the crate, its askama templates and the files it
# embeds with include_str! (scenarios/network-failure.yaml, the demo mesh, versions.env).
COPY Cargo.toml Cargo.lock versions.env ./
COPY src ./src
COPY templates ./templates
COPY scenarios ./scenarios
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin meshdrill \
 && cp target/release/meshdrill /usr/local/bin/meshdrill

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/meshdrill /usr/local/bin/meshdrill
USER 65532:65532
ENTRYPOINT ["meshdrill"]
