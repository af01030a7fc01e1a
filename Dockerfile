# thingport as a container image: the server on the embedded default (SQLite in the /var/lib/thingport volume),
# or production mode with THINGPORT_DATABASE_URL / THINGPORT_REDIS_URL (deploy/compose.yaml). README "Packaging".
#
#   docker build -t thingport .
#   docker run -d -p 8443:8443 -p 127.0.0.1:8080:8080 -v thingport-data:/var/lib/thingport thingport
#
# tests/test_deploy.py checks this file and runs its install step and command outside a container engine.

ARG PYTHON_IMAGE=python:3.12-slim

# --- build: a virtual environment with thingport and every backend (wheels only: no compiler needed) ------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/thingport && /opt/thingport/bin/pip install --only-binary=:all: ".[all]"

# --- runtime: the venv, a user of its own, nothing of the build -------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 thingport \
 && useradd --system --uid 10001 --gid thingport --home-dir /var/lib/thingport --shell /usr/sbin/nologin thingport \
 && install -d -o thingport -g thingport -m 0700 /var/lib/thingport
COPY --from=build /opt/thingport /opt/thingport
# The management API listens on every interface of the container (it is reached through a published port);
# publish it on a private address only (-p 127.0.0.1:8080:8080). Every endpoint but /healthz, /readyz and
# the API's documentation needs a key.
ENV PATH=/opt/thingport/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    THINGPORT_DATA_DIR=/var/lib/thingport \
    THINGPORT_API_HOST=0.0.0.0
USER 10001:10001
WORKDIR /var/lib/thingport
VOLUME ["/var/lib/thingport"]
EXPOSE 8443 8080
# /readyz: the database answers and takes writes (200; 503 otherwise). Plain HTTP on the API port, asked from
# inside the container (no curl in the slim image: the venv's Python asks).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('THINGPORT_API_PORT', '8080'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["thingport"]
CMD ["serve"]
