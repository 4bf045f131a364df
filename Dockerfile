# ticketing-tracker: a three-stage build (cargo-chef) so dependencies are a cached layer.
# SQL is checked at build time against the committed .sqlx/ data (SQLX_OFFLINE), so the build
# needs no database; migrations are embedded in the binary.

FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ENV SQLX_OFFLINE=true
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin ticketing-tracker

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home ticketing
WORKDIR /app
COPY --from=builder /app/target/release/ticketing-tracker /usr/local/bin/ticketing-tracker
COPY config config
USER ticketing
ENV APP_ENVIRONMENT=production
EXPOSE 8080
# Exec form: the process is PID 1 and receives SIGTERM itself, so in-flight payments are
# recorded before it exits.
ENTRYPOINT ["/usr/local/bin/ticketing-tracker"]
CMD ["run"]
