# The load-test image: locust, the streamstats SDK and the loadtest/ folder. Build it from the repo root:
#
#   docker build -f docker/locust.Dockerfile -t streamstats-locust .
#
# docker-compose.yml runs it as the locust master and as the workers. The entry point is
# `locust -f /app/loadtest/locustfile.py`; give locust's own flags as the command (e.g. --worker
# --master-host master), or set them as LOCUST_* environment variables.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY client/ client/
COPY server/ server/
COPY docker/requirement.py docker/requirement.py
# The SDK (the locustfile uses its generated stubs; no server extra) and locust at the version
# pyproject.toml pins for the dev extra (docker/requirement.py reads it), so this image and a
# `pip install -e '.[dev]'` checkout run the same locust.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install /wheels/streamstats-*.whl "$(python docker/requirement.py pyproject.toml locust)" \
    && python -c "import locust, grpc, streamstats.v1.streamstats_pb2_grpc"

FROM ${PYTHON_IMAGE} AS locust
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app
# uid 1000: usually the host user who owns the ./results folder the master writes to (docker-compose.yml
# runs the master as $RESULTS_UID:$RESULTS_GID for anyone else).
RUN groupadd --gid 1000 locust \
    && useradd --uid 1000 --gid locust --create-home --shell /usr/sbin/nologin locust
COPY --from=builder /opt/venv /opt/venv
COPY docker/locust-entrypoint.sh /usr/local/bin/locust-entrypoint
RUN chmod 0755 /usr/local/bin/locust-entrypoint
# /app on PYTHONPATH: the locustfile can import its helpers as loadtest.histogram etc.
COPY loadtest/ /app/loadtest/
WORKDIR /app
USER 1000:1000
# 8089: the web UI (without --headless); 5557: where workers reach the master.
EXPOSE 8089 5557
ENTRYPOINT ["/usr/local/bin/locust-entrypoint", "-f", "/app/loadtest/locustfile.py"]
CMD ["--help"]
