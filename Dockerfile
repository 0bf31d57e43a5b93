# The runledger binary in a small image, for docker-compose.yml.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin runledger

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/runledger /usr/local/bin/runledger
ENTRYPOINT ["runledger"]
CMD ["up"]
