# Multi-stage: build with the Rust toolchain, run the binary alone as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN cargo build --release --locked --bin apsched

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home apsched
COPY --from=build /src/target/release/apsched /usr/local/bin/apsched
USER apsched
WORKDIR /data
# In a container the port must be reachable from outside it, so apsched requires API tokens there: run with
# `-e APSCHED_API_TOKENS=<token>:admin` (at least 16 characters). The SQLite file lives on the /data volume.
ENV APSCHED_LISTEN=0.0.0.0:8080 \
    APSCHED_JOBSTORES__DEFAULT__URL=sqlite:///data/apsched.db
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["apsched"]
CMD ["serve"]
