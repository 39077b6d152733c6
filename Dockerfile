# syntax=docker/dockerfile:1
# The oncehook image: a release build on Debian bookworm, run as a non-root user.
#
#   docker build -t oncehook --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/oncehook.toml:/etc/oncehook/oncehook.toml:ro" -v oncehook-data:/var/lib/oncehook \
#     -e ONCEHOOK_ADMIN_TOKEN oncehook
#
# The config is expected at /etc/oncehook/oncehook.toml. Inside a container, listen on
# 0.0.0.0 (server.listen, and admin.listen if Prometheus scrapes from another container) and
# keep the SQLite file on the volume: url = "sqlite:///var/lib/oncehook/oncehook.db".
# The HEALTHCHECK asks /healthz on 127.0.0.1:8081; change it with admin.listen's port.

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# Only what the build reads, so that editing docs or tests does not rebuild the image.
COPY Cargo.toml Cargo.lock build.rs ./
COPY migrations ./migrations
COPY src ./src
# .git is not sent to the builder (.dockerignore): the commit for `oncehook --version` comes
# from this argument instead.
ARG GIT_COMMIT=""
ENV ONCEHOOK_GIT_COMMIT=${GIT_COMMIT}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin oncehook \
 && install -D -m 0755 target/release/oncehook /out/oncehook

FROM debian:bookworm-slim
# busybox provides `wget` for the HEALTHCHECK (about 1 MB); nothing else is needed at run
# time: TLS roots are compiled into the binary and SQLite is bundled.
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 oncehook \
 && useradd --system --uid 10001 --gid oncehook --home-dir /var/lib/oncehook \
      --shell /usr/sbin/nologin oncehook \
 && install -d -o oncehook -g oncehook -m 0750 /var/lib/oncehook \
 && install -d -m 0755 /etc/oncehook
COPY --from=builder /out/oncehook /usr/local/bin/oncehook

USER 10001:10001
WORKDIR /var/lib/oncehook
VOLUME ["/var/lib/oncehook"]
ENV ONCEHOOK_LOG=info
# Intake (server.listen) and admin: /healthz, /readyz, /metrics, /api/v1 (admin.listen).
EXPOSE 8080 8081
# SIGTERM: stop taking webhooks, finish in-flight requests within server.shutdown_grace, exit.
# Give `docker stop -t` (Compose: stop_grace_period) more than the grace.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8081/healthz"]
ENTRYPOINT ["/usr/local/bin/oncehook"]
CMD ["serve", "-c", "/etc/oncehook/oncehook.toml"]
