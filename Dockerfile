# syntax=docker/dockerfile:1
#
# smtp-prober container image.
#
#   docker build -t smtp-prober .
#   docker run --rm -p 9741:9741 --read-only --tmpfs /tmp smtp-prober demo --web.listen-address=:9741
#   docker run --rm -p 9741:9741 --read-only \
#       -v "$PWD/smtp-prober.yml:/etc/smtp-prober/smtp-prober.yml:ro" \
#       -v "$PWD/secrets:/run/secrets:ro" smtp-prober
#
# The runtime image holds the binary and nothing else of ours: the configuration is mounted at
# /etc/smtp-prober/smtp-prober.yml and secrets (password, client secret, token files) under
# /run/secrets, where the configuration's *_file fields point. It runs as an unprivileged user,
# needs no capability and writes nothing, so a read-only root file system works; only `demo`
# writes its generated certificate to a temporary directory (mount a tmpfs on /tmp).

# The builder's Debian release matches the runtime image's (bookworm = Debian 12), so the binary
# links against the glibc it runs with. RUST_VERSION must be at least the newest rust-version of
# the locked dependencies (checked by the test suite).
ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# The memory allocator (jemalloc, built from source with the binary) needs make, which the slim
# image leaves out.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
# The registry and target directories are build caches, so a rebuild after a source change
# compiles only smtp-prober itself. Release builds carry no debug info in the image.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin smtp-prober \
    && install -D -m 0755 target/release/smtp-prober /out/smtp-prober

# distroless/cc: glibc, libgcc, CA certificates (the `system` trust source) and /etc/passwd with
# the unprivileged user `nonroot` (65532); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="smtp-prober" \
      org.opencontainers.image.description="Prometheus exporter and synthetic SMTP delivery prober" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/smtp-prober /usr/local/bin/smtp-prober
USER 65532:65532
EXPOSE 9741
ENTRYPOINT ["/usr/local/bin/smtp-prober"]
CMD ["--config.file=/etc/smtp-prober/smtp-prober.yml"]
