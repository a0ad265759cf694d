# syntax=docker/dockerfile:1
#
# The `parley` image: one executable for every role. compose.yaml runs it as
# `parley migrate`, `parley serve --no-migrate` (the default command) and
# `parley mailer`.
#
#   docker build -t parley:local .
#   docker run --rm -e PARLEY_JWT_SECRET parley:local mail-key

# ================================
# Build stage
# ================================
# swift:6.3-bookworm: the official Swift image on Debian 12. Swift 6.3 is the
# toolchain Parley is developed and tested with (Package.swift needs 6.1 or
# newer), and Debian 12 is what the runtime stage below runs, so the C
# libraries linked here (libhiredis0.14, libsodium23, libcurl4, libcrack2) are
# the very ones installed there. Override with --build-arg SWIFT_IMAGE=… (any
# official swift:6.1-bookworm or later *-bookworm tag).
ARG SWIFT_IMAGE=swift:6.3-bookworm
FROM ${SWIFT_IMAGE} AS build

# Packages are not pinned to versions: Debian 12's security updates replace
# them, and a pinned version would stop being installable.
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends \
        libhiredis-dev \
        libsodium-dev \
        libcurl4-openssl-dev \
        libssl-dev \
        libcrack2-dev \
        cracklib-runtime \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Dependencies first: this layer is reused until Package.swift changes.
COPY Package.swift ./
RUN swift package resolve

# Tests/ is copied too: the manifest names its targets (Tests/TestSupport has a
# custom path), and SwiftPM refuses a manifest whose target folders are missing,
# even when building only the `parley` product.
# (scripts/check_deploy checks that every folder the manifest names is copied.)
COPY Sources ./Sources
COPY sql ./sql
COPY docs ./docs
COPY web ./web
COPY Tests ./Tests

# The Swift runtime and Foundation linked statically, so the runtime image
# needs no Swift toolchain; the C libraries stay shared. The migrations in sql/,
# the API reference in docs/ and the web client in web/ are embedded in the
# binary.
RUN swift build -c release --product parley --static-swift-stdlib \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/parley" /staging/parley \
    && install -D -m 0755 /usr/libexec/swift/linux/swift-backtrace-static /staging/swift-backtrace-static

# ================================
# Runtime stage
# ================================
FROM debian:bookworm-slim

# Shared libraries the binary links (hiredis, libsodium, libcurl for SMTP,
# cracklib) and the cracklib dictionary: cracklib-runtime builds
# /var/cache/cracklib/cracklib_dict when it is installed, and `parley serve`
# refuses to start without it. ca-certificates for smtps:// and STARTTLS,
# tzdata for time zones, curl for the health check. (Not pinned: see above.)
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends \
        libhiredis0.14 \
        libsodium23 \
        libcurl4 \
        libcrack2 \
        cracklib-runtime \
        libstdc++6 \
        ca-certificates \
        tzdata \
        curl \
    && rm -rf /var/lib/apt/lists/* \
    && test -s /var/cache/cracklib/cracklib_dict.pwd

# A fixed, non-root uid/gid (10001), so orchestrators can check runAsNonRoot.
RUN groupadd --gid 10001 parley \
    && useradd --uid 10001 --gid parley --home-dir /var/lib/parley --create-home --shell /usr/sbin/nologin parley

COPY --from=build /staging/parley /usr/local/bin/parley
COPY --from=build /staging/swift-backtrace-static /usr/local/libexec/parley/swift-backtrace-static

# Crash reports from the Swift runtime, without a toolchain in the image.
ENV SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/usr/local/libexec/parley/swift-backtrace-static
# In a container the gateway must listen on every interface (the default is 127.0.0.1).
ENV PARLEY_HTTP_HOST=0.0.0.0

USER 10001:10001
WORKDIR /var/lib/parley

EXPOSE 8080

# SIGTERM: a gateway closes its WebSockets with 1012, then drains; give it time
# (docker stop -t / stop_grace_period).
STOPSIGNAL SIGTERM

# /healthz answers 200 while the process runs. For other roles (migrate,
# mailer) compose.yaml disables or replaces this check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${PARLEY_HTTP_PORT:-8080}/healthz\" || exit 1"]

ENTRYPOINT ["parley"]
CMD ["serve", "--no-migrate"]
