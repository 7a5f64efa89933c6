# syntax=docker/dockerfile:1
# pushfabric: push-gateway and push-publish, built from source with Debian 12 packages.
#
#   docker build -t pushfabric .
#   docker run --rm -p 8080:8080 pushfabric push-gateway --listen 0.0.0.0:8080 --redis redis://HOST:6379
#
# One image holds both binaries; docker-compose.yml runs it as gateway1..3 and as the HTTP
# publisher (`command:` picks the program), with HAProxy (haproxy:2.6) in front of the gateways.
# Since the gateway speaks WebSocket itself, the only libraries are hiredis and libevent.

# ---- build ------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS build

# python3-minimal only because tests/CMakeLists.txt looks for python3 at configure time;
# nothing is run with it here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libhiredis-dev libevent-dev \
      python3-minimal \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# Only the two programs are built (not the tests, fuzzers or benchmark tools).
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j"$(nproc)" --target push-gateway push-publish \
 && cmake --install build --prefix /usr/local \
 && test -x /usr/local/bin/push-gateway \
 && test -x /usr/local/bin/push-publish

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# Only the shared libraries the two binaries link against (Debian 12 package names).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libhiredis0.14 libevent-2.1-7 libevent-pthreads-2.1-7 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pushfabric \
 && useradd --system --uid 10001 --gid pushfabric --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin pushfabric

COPY --from=build /usr/local/bin/push-gateway /usr/local/bin/push-publish /usr/local/bin/

# Fail the build here, not at run time, if a linked library is missing from the list above.
RUN ! ldd /usr/local/bin/push-gateway /usr/local/bin/push-publish | grep 'not found'

USER pushfabric:pushfabric
EXPOSE 8080 8081
CMD ["push-gateway", "--listen", "0.0.0.0:8080"]
