# egressd container image (README "Container image").
#   podman build --format docker -t egressd .   (or docker build; the OCI format has no
#   HEALTHCHECK; deploy/test-image.sh builds and tests it)
# Two stages: Debian 12 with the build packages of scripts/deps.sh builds a Release
# binary; debian:12-slim gets that binary and only the shared libraries it links.
# The image runs as uid/gid 65532 (egressd), works with a read-only root filesystem and
# every capability dropped (egressd binds ports above 1024 and needs no privilege), and
# runs `egressd check-config` before it serves, so a bad config stops the container
# with every problem in its log instead of serving something else.

FROM docker.io/library/debian:12 AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
# CCACHE_DIR may be a cache mounted by the builder (deploy/test-image.sh mounts the
# host's); without one ccache just compiles. BASEDIR keeps the keys free of /src.
ARG CCACHE_DIR=/tmp/ccache
ENV CCACHE_DIR=${CCACHE_DIR} CCACHE_BASEDIR=/src CCACHE_NOHASHDIR=1
ARG JOBS=2
RUN rm -rf build && \
    cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DEGRESSD_TESTS=OFF \
      -DEGRESSD_BENCH=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null && \
    cmake --build build/release -j"${JOBS}" --target egressd && \
    strip -o /egressd build/release/proxy/egressd

FROM docker.io/library/debian:12-slim
# The runtime libraries of `ldd egressd`, by Debian package; publicsuffix for the
# registrable-domain metrics label and ca-certificates for a `hook.url` over https.
RUN apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libyaml-cpp0.7 libspdlog1.10 libfmt9 libssl3 libc-ares2 libpsl5 \
      libprometheus-cpp-core1.0 publicsuffix ca-certificates >/dev/null && \
    apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log && \
    groupadd --gid 65532 egressd && \
    useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/egressd \
      --shell /usr/sbin/nologin egressd && \
    mkdir -p /etc/egressd /var/lib/egressd && \
    chown 65532:65532 /var/lib/egressd && chmod 0750 /var/lib/egressd
COPY --from=build /egressd /usr/local/bin/egressd
COPY deploy/image/entrypoint.sh /usr/local/bin/egressd-entrypoint
COPY deploy/image/healthcheck.sh /usr/local/bin/egressd-healthcheck
COPY deploy/egressd.yaml /etc/egressd/egressd.yaml

LABEL org.opencontainers.image.title="egressd" \
      org.opencontainers.image.description="Egress-filtering forward proxy (HTTP CONNECT, plain HTTP and SOCKS5) with an allowlist" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"

# /etc/egressd/egressd.yaml: the config (mount yours over it, or a directory over
# /etc/egressd). /var/lib/egressd: decisions_file; must be writable (a volume, so that
# a read-only root still works).
VOLUME ["/var/lib/egressd"]
# 3128 HTTP proxy and SOCKS5 (sniffed), 1080 the same, 9090 the admin endpoint.
EXPOSE 3128 1080 9090
USER 65532:65532
WORKDIR /var/lib/egressd
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/egressd-healthcheck"]
ENTRYPOINT ["/usr/local/bin/egressd-entrypoint"]
CMD ["run", "--config", "/etc/egressd/egressd.yaml"]
