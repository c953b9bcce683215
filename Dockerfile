# syntax=docker/dockerfile:1
# payledger API image: `docker compose up` (see docker-compose.yml) or
#   docker build -t payledger . && docker run -e DATABASE_URL=... -e AMQP_URL=... -p 8080:8080 payledger

# ---- build ----
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds (BuildKit); the binary is copied
# out of the cached target/ because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p api \
 && install -D -m 0755 target/release/payledger /out/payledger

# ---- runtime ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin payledger
COPY --from=builder /out/payledger /usr/local/bin/payledger
USER payledger
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
CMD ["payledger", "serve", "--sandbox"]
