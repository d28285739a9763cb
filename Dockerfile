# The streamstats server image.
#
#   docker build -t streamstats-server .
#   python scripts/dev_certs.py       # ./secrets: a CA, server and client certificates, tokens
#   docker run --rm -p 127.0.0.1:50051:50051 -v streamstats-data:/data --user "$(id -u):10001" \
#       -v "$PWD/secrets:/secrets:ro" -e STREAMSTATS_TLS_CERT=/secrets/server.pem \
#       -e STREAMSTATS_TLS_KEY=/secrets/server.key -e STREAMSTATS_AUTH_TOKENS=/secrets/tokens.toml \
#       -e STREAMSTATS_HEALTHCHECK_TLS_CA=/secrets/ca.pem streamstats-server
#
# Two stages: "builder" builds the project's wheel and installs it with the server extra into a venv;
# the runtime stage copies only that venv (no compiler, no pip cache, no source tree) and runs the server
# as an unprivileged user on 0.0.0.0:50051 with its durable data in the /data volume.
# Safe by default: on 0.0.0.0 the server refuses to start (exit 2, one line saying what to set) until it
# is given TLS (STREAMSTATS_TLS_CERT + STREAMSTATS_TLS_KEY) and/or tokens (STREAMSTATS_AUTH_TOKENS), or
# STREAMSTATS_INSECURE=1 for a trusted network. This image sets none of them on purpose: the choice is
# the deployment's (docker-compose.yml makes it explicitly per service; scripts/dev_certs.py writes
# development certificates and tokens into ./secrets).
# The load-test image is docker/locust.Dockerfile; docker-compose.yml runs both.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# What the build needs (pyproject.toml names README.md as the readme); tests, docs etc. stay out.
COPY pyproject.toml README.md ./
COPY client/ client/
COPY server/ server/
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install "$(ls /wheels/streamstats-*.whl)[server]" \
    && python -c "import streamstats, streamstats_server.__main__, grpc_health.v1.health_pb2"

FROM ${PYTHON_IMAGE} AS server
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMSTATS_HOST=0.0.0.0 \
    STREAMSTATS_PORT=50051 \
    STREAMSTATS_DATA_DIR=/data
# A fixed uid/gid, so a bind-mounted data dir can be chowned to it: chown -R 10001:10001 ./data
# /data is also group-writable, so a container run as another uid with gid 10001 can use a new named
# volume: docker-compose.yml's server-secure runs as the owner of ./secrets (its keys are 0600).
RUN groupadd --system --gid 10001 streamstats \
    && useradd --system --uid 10001 --gid streamstats --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin streamstats \
    && mkdir -p /data \
    && chown streamstats:streamstats /data \
    && chmod 0775 /data
COPY --from=builder /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/streamstats/healthcheck.py
# A new named volume starts as a copy of /data here, so it is owned by streamstats too.
VOLUME ["/data"]
WORKDIR /data
# Numeric, so a runtime (e.g. Kubernetes runAsNonRoot) can tell it is not root without /etc/passwd.
USER 10001:10001
EXPOSE 50051
# A real grpc.health.v1 Check (docker/healthcheck.py), not a TCP probe. start-period covers recovery of
# a large data dir; the server answers NOT_SERVING (unhealthy) while it drains on SIGTERM. With
# STREAMSTATS_TLS_CERT set the probe speaks TLS, trusting STREAMSTATS_HEALTHCHECK_TLS_CA (and, for mutual
# TLS, presenting STREAMSTATS_HEALTHCHECK_TLS_CERT/_KEY); it needs no token.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/streamstats/healthcheck.py", "--timeout", "3"]
# Exec form: the server is PID 1 and gets SIGTERM itself; it lets calls in flight finish for
# --grace-seconds (10 by default), so stop it with a longer timeout: docker stop -t 20.
STOPSIGNAL SIGTERM
CMD ["streamstats-server"]
