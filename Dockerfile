# syntax=docker/dockerfile:1
# payledger API images, two targets from one file:
#
#   production (the default, last stage): built with --no-default-features, so the binary holds
#     no sandbox provider and no provider emulators; it runs `payledger serve` against the
#     providers PROVIDERS names (`serve --sandbox` and `payledger sandbox` refuse to start).
#       docker build -t payledger . && docker run -e DATABASE_URL=... -e AMQP_URL=... -e PROVIDERS=... -p 8080:8080 payledger
#
#   demo: the default features (the `sandbox` feature), running `payledger serve --sandbox`
#     with every provider against its in-process emulator. docker-compose.yml builds this one.
#       docker build --target demo -t payledger:demo .   or   docker compose up --build

# ---- build ----
FROM rust:1.95-bookworm AS source
WORKDIR /src
COPY . .

# Cache mounts keep the registry and target/ between builds (BuildKit); the binary is copied
# out of the cached target/ because cache mounts are not part of the image. Each build has its
# own target/ so the two binaries, built with different features, never overwrite each other.
FROM source AS build-production
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,id=payledger-target-production,target=/src/target \
    cargo build --release --locked -p api --no-default-features \
 && install -D -m 0755 target/release/payledger /out/payledger

FROM source AS build-demo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,id=payledger-target-demo,target=/src/target \
    cargo build --release --locked -p api \
 && install -D -m 0755 target/release/payledger /out/payledger

# ---- runtime ----
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin payledger
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080

FROM runtime AS demo
COPY --from=build-demo /out/payledger /usr/local/bin/payledger
USER payledger
CMD ["payledger", "serve", "--sandbox"]

FROM runtime AS production
COPY --from=build-production /out/payledger /usr/local/bin/payledger
USER payledger
CMD ["payledger", "serve"]
