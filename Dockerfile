# One Dockerfile, one target per service; each image holds only its own service:
#
#   docker build --target server  -t microservices/server  .   (also microservices-await-redis)
#   docker build --target counter -t microservices/counter .
#   docker build --target poller  -t microservices/poller  .
#
# PYTHON_IMAGE picks the base (scripts/airgap-images makes one where no registry is reachable);
# PIP_INSTALL_FLAGS="--no-index --find-links=/wheelhouse" installs the wheels it downloaded.
# Every package comes from a lock with hashes (requirements/, `make lock`): see install-service.
# CPython 3.13 on Debian trixie; Renovate keeps the tag current and pins its digest (README,
# "Supply chain").
ARG PYTHON_IMAGE=python:3.13.18-slim-trixie

# ---- build: a virtualenv per service, in stages that the final images copy from ----------
FROM ${PYTHON_IMAGE} AS build
ARG PIP_INSTALL_FLAGS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PIP_INSTALL_FLAGS=${PIP_INSTALL_FLAGS}
COPY .wheelhouse/ /wheelhouse/
COPY pyproject.toml README.md /src/
COPY requirements/ /src/requirements/
COPY services/common/ /src/services/common/
COPY services/lessons/ /src/services/lessons/
COPY services/install-service /usr/local/bin/install-service

FROM build AS server-build
COPY services/server/ /src/services/server/
RUN install-service server

FROM build AS counter-build
COPY services/counter/ /src/services/counter/
RUN install-service counter

FROM build AS poller-build
COPY services/poller/ /src/services/poller/
RUN install-service poller

# ---- run: what every image shares -----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS run
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001

# Exec-form entrypoints: the service is PID 1 and gets SIGTERM itself.
FROM run AS counter
COPY --from=counter-build /opt/venv /opt/venv
ENTRYPOINT ["microservices-counter"]

FROM run AS poller
COPY --from=poller-build /opt/venv /opt/venv
ENTRYPOINT ["microservices-poller"]

# Last, so that a plain `docker build .` gives the server.
FROM run AS server
COPY --from=server-build /opt/venv /opt/venv
EXPOSE 8080
ENTRYPOINT ["microservices-server"]
