# Multi-stage build: the build stage runs the same steps as scripts/run (Debian packages, CMake
# Release build); the runtime stage carries only respite and its runtime libraries.
FROM debian:bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libuv1-dev libhiredis-dev libfmt-dev catch2 libcli11-dev \
      libhttp-parser-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    && cmake --build build/release --target respite -j"$(nproc)"

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libhiredis0.14 libfmt9 libhttp-parser2.9 libssl3 redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home respite
COPY --from=build /src/build/release/respite /usr/local/bin/respite
COPY conf/respite.conf /etc/respite/respite.conf
COPY conf/respite-healthcheck /usr/local/bin/respite-healthcheck
USER respite
EXPOSE 7000
# PING on port 7000 (RESPITE_HEALTHCHECK_PORT to change it); works with requirepass too, with
# no password needed (see the script).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD respite-healthcheck
# In a container respite must listen beyond loopback; point --upstream at your Redis. Protected
# mode is off here as in the official Redis image: every client of a container comes from another
# address, and the container's network is its boundary (set requirepass or users to guard it).
ENTRYPOINT ["/usr/local/bin/respite", "--config", "/etc/respite/respite.conf", "--bind", "0.0.0.0", "--protected-mode", "no"]
