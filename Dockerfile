# ticketing-tracker: a three-stage build (cargo-chef) so dependencies are a cached layer.
# SQL is checked at build time against the committed .sqlx/ data (SQLX_OFFLINE), so the build
# needs no database; migrations are embedded in the binary. The build context is the allowlist
# in .dockerignore. `bash .ci/deploy-checks` lints this file (hadolint, checkov);
# `bash .ci/image-smoke` builds the binary the builder stage builds and runs it laid out as in
# the runtime stage (no Docker engine needed).

FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ENV SQLX_OFFLINE=true
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin ticketing-tracker --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin ticketing-tracker

# The ATRIP simulator, for docker-compose.yml's local stack only (`target: simulator`). A stage
# of its own, never the default target (the runtime stage below is last): the product's image
# holds no simulator.
FROM builder AS simulator-build
RUN cargo build --release --locked --bin atrip-simulator

FROM debian:bookworm-slim AS simulator
COPY --from=simulator-build /app/target/release/atrip-simulator /usr/local/bin/atrip-simulator
USER 10001:10001
EXPOSE 8088
ENTRYPOINT ["/usr/local/bin/atrip-simulator"]
CMD ["--listen", "0.0.0.0:8088"]

FROM debian:bookworm-slim AS runtime
# DL3008 (pin apt versions) is ignored on purpose: the only package is the CA bundle, which
# should be the newest one the bookworm suite ships, and Debian drops superseded versions from
# its mirrors, so a pinned `ca-certificates=<version>` would break the build at the next point
# release. The base image tag pins the distribution.
# The user and group get fixed numeric ids (10001) so `USER 10001:10001` and Kubernetes'
# runAsUser/runAsGroup name the same account without resolving names (DL3066).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ticketing \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin ticketing
# /app and everything in it stay owned by root and read-only for the process: it writes nothing
# to disk (Kubernetes runs it with readOnlyRootFilesystem).
WORKDIR /app
COPY --from=builder /app/target/release/ticketing-tracker /usr/local/bin/ticketing-tracker
COPY config config
USER 10001:10001
ENV APP_ENVIRONMENT=production
EXPOSE 8080
# GET /healthz with bash alone (the image has no curl or wget): open a TCP connection with
# bash's /dev/tcp, send an HTTP/1.0 request and require a 200 status line. Every step is a bash
# builtin. Kubernetes ignores HEALTHCHECK and uses the Deployment's probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["bash", "-c", "exec 3<>\"/dev/tcp/127.0.0.1/${APP_HTTP__PORT:-8080}\" && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r status <&3 && [[ $status == *' 200 '* ]]"]
# Exec form: the process is PID 1 and receives SIGTERM itself, so in-flight payments are
# recorded before it exits.
ENTRYPOINT ["/usr/local/bin/ticketing-tracker"]
CMD ["run"]
