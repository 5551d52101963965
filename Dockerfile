# Tern broker image: broker-node (entry point), broker-ctl and tern-passwd on Debian 12.
#
#   docker build -t tern:latest .
#   docker run --rm -p 1883:1883 tern:latest --listen 0.0.0.0:1883
#
# Kubernetes manifests: etc/kubernetes/tern.yaml; docs/kubernetes.md.

# ---- build ----------------------------------------------------------------------------------
FROM debian:12 AS build
# The build dependencies of scripts/setup.sh (without the test tools).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ cmake ninja-build pkg-config \
      libcaf-dev libboost1.74-dev libprotobuf-dev protobuf-compiler libssl-dev \
      libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev \
      librocksdb-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY proto/ proto/
COPY supervision/ supervision/
COPY actors/ actors/
COPY cluster/ cluster/
COPY apps/ apps/
# Warnings are errors in development builds; a release image should not fail on a warning a
# different optimisation level brings up.
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_TESTS=OFF -DTERN_WERROR=OFF \
 && cmake --build build --target broker-node broker-ctl tern-passwd \
 && strip build/apps/broker-node build/apps/broker-ctl build/apps/tern-passwd

# ---- runtime --------------------------------------------------------------------------------
FROM debian:12-slim
# Exactly the shared libraries the three binaries link (ldd), by package.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcaf-core0.17 libcaf-io0.17 libcaf-openssl0.17 libfmt9 libpq5 libprotobuf32 \
      librocksdb7.8 libspdlog1.10 libssl3 libtomlplusplus3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tern \
 && useradd --system --uid 10001 --gid tern --home-dir /var/lib/tern --shell /usr/sbin/nologin tern \
 && mkdir -p /var/lib/tern /etc/tern \
 && chown tern:tern /var/lib/tern
COPY --from=build /src/build/apps/broker-node /src/build/apps/broker-ctl \
                  /src/build/apps/tern-passwd /usr/local/bin/
COPY etc/tern.toml etc/acl.conf /etc/tern/
USER 10001:10001
WORKDIR /var/lib/tern
VOLUME /var/lib/tern
# 1883 MQTT, 8883 MQTT/TLS, 8083 WebSocket, 8084 secure WebSocket, 18083 management API and
# dashboard, 4370 cluster. Which of them listen, and on which address, is up to the config.
EXPOSE 1883 8883 8083 8084 18083 4370
ENTRYPOINT ["/usr/local/bin/broker-node"]
CMD ["--config", "/etc/tern/tern.toml"]
