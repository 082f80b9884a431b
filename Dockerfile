# The `tramline` binary in a small runtime image; one image serves every role:
#   docker build -t tramline .
#   docker run --rm -p 8081:8081 tramline serve order --config /etc/tramline/tramline.toml
# See docker-compose.yml for the whole system (MariaDB, a Kafka broker, one container per role).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka and zlib are built from source (the image's gcc and make) and linked statically.
COPY . .
RUN cargo build --release --locked --bin tramline \
    && install -D target/release/tramline /out/tramline

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/tramline --create-home tramline
COPY --from=build /out/tramline /usr/local/bin/tramline
COPY deploy/tramline.toml /etc/tramline/tramline.toml
USER tramline
WORKDIR /var/lib/tramline
# order, payment, delivery, view, relay
EXPOSE 8081 8082 8083 8084 8085
ENTRYPOINT ["tramline"]
CMD ["serve", "all", "--config", "/etc/tramline/tramline.toml"]
