# One Dockerfile, one target per service; each image holds only its own service:
#
#   docker build --target server  -t microservices/server  .   (also microservices-await-redis)
#   docker build --target counter -t microservices/counter .
#   docker build --target poller  -t microservices/poller  .
#   docker build --target server-pypy -t microservices/server-pypy .   (optional, on PyPy;
#       .wheelhouse/pypy/ first: README, "PyPy server (optional)")
#
# PYTHON_IMAGE picks the base (scripts/airgap-images makes one where no registry is reachable);
# PIP_INSTALL_FLAGS="--no-index --find-links=/wheelhouse" installs the wheels it downloaded.
# Every package comes from a lock with hashes (requirements/, `make lock`): see install-service.
# CPython 3.13 on Debian trixie; Renovate keeps the tag current and pins its digest (README,
# "Supply chain").
ARG PYTHON_IMAGE=python:3.13.18-slim-trixie
# The PyPy server's base: PyPy 7.3 for Python 3.11 on Debian trixie (scripts/airgap-images makes
# one from trixie's pypy3 where no registry is reachable).
ARG PYPY_IMAGE=pypy:3.11-7.3.23-slim-trixie

# ---- build: a virtualenv per service, in stages that the final images copy from ----------
# What every build stage installs from, whatever its interpreter.
FROM scratch AS sources
COPY pyproject.toml README.md /src/
COPY requirements/ /src/requirements/
COPY services/common/ /src/services/common/
COPY services/lessons/ /src/services/lessons/
COPY services/install-service /usr/local/bin/install-service

FROM ${PYTHON_IMAGE} AS build
ARG PIP_INSTALL_FLAGS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PIP_INSTALL_FLAGS=${PIP_INSTALL_FLAGS}
COPY .wheelhouse/ /wheelhouse/
COPY --from=sources /src/ /src/
COPY --from=sources /usr/local/bin/install-service /usr/local/bin/install-service

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

FROM run AS server
COPY --from=server-build /opt/venv /opt/venv
EXPOSE 8080
ENTRYPOINT ["microservices-server"]

# ---- the optional PyPy server, after every other target: without BuildKit, docker builds
# every stage before the one it targets, and no other image may need PyPy's base or wheels.
# PyPy: the wheels PyPI has none of for it (gevent, hiredis...) come built from their sdists
# by scripts/build-wheels, with the server's lock that names their hashes: nothing compiles
# here (PIP_ONLY_BINARY), on either path (PIP_FIND_LINKS: the registry's path too).
FROM ${PYPY_IMAGE} AS server-pypy-build
ARG PIP_INSTALL_FLAGS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PIP_INSTALL_FLAGS=${PIP_INSTALL_FLAGS} PIP_FIND_LINKS=/wheelhouse PIP_ONLY_BINARY=:all:
COPY .wheelhouse/pypy/ /wheelhouse/
COPY --from=sources /src/ /src/
COPY --from=sources /usr/local/bin/install-service /usr/local/bin/install-service
# build-wheels' copy of the server's lock (with the built wheels' hashes added) must be made from
# requirements/server.txt as it is: its first line names the sha256 of the lock it was made
# from, and one made before any change (a version, a marker, a hash) would install the old.
COPY .wheelhouse/pypy/server.txt /src/requirements/server-built.txt
RUN locked=$(sha256sum /src/requirements/server.txt) && locked=${locked%% *} \
    && if ! grep -qxF "# scripts/build-wheels, from the lock of sha256:$locked" \
            /src/requirements/server-built.txt; then \
        echo "server-pypy: .wheelhouse/pypy/server.txt was not made from this" \
            "requirements/server.txt (sha256:$locked): run scripts/build-wheels again" \
            "(README, PyPy server)" >&2; \
        head -n 1 /src/requirements/server-built.txt >&2; exit 1; fi \
    && mv /src/requirements/server-built.txt /src/requirements/server.txt
COPY services/server/ /src/services/server/
RUN install-service server pypy3

# The same server on PyPy (README, "PyPy server (optional)"). Its garbage collector, pinned:
# - PYPY_GC_NURSERY: PyPy sizes its young generation at half the CPU cache that /proc/cpuinfo
#   reports, which on a cloud VM is the shared L3: 480 MiB here gave every process a 240 MiB
#   nursery, so a worker's memory would depend on the node it lands on (557 MiB a worker here),
#   and a major collection marked the whole heap in one 80-100 ms step (p99 7x Node's).
# - PYPY_GC_INCREMENT_STEP: how much a step of a major collection marks; by default twice the
#   nursery, so with 64MB the whole heap again. 4MB steps keep the pauses short.
# - PYPY_GC_MAX bounds each worker's heap: near it PyPy collects harder, and aborts a worker
#   whose live heap a collection cannot bring under it (MemoryError, SIGABRT; a soft cap: an
#   allocation-heavy worker reached 437 MB of heap before that). 256MB, not less: a request
#   whose body trickles in holds about 150 KiB of heap, and gunicorn lets a gevent worker
#   hold 1,000 connections; with 128MB, 900 slow bodies aborted the worker, with 256MB 1,000
#   and 1,200 of them held (worker RSS 391-405 MiB). Each worker runs its major collections
#   itself, a step every 10 ms under it (gc_pacing.py: PyPy ran the steps back to back,
#   ~190 ms in which every request waited).
# Measured with scripts/benchmark (README, "Measured").
# WARMUP_SECONDS: each worker answers requests of its own before it takes a connection
# (warmup.py): a cold PyPy worker serves a seventh of a warm one.
FROM ${PYPY_IMAGE} AS server-pypy
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYPY_GC_NURSERY=64MB \
    PYPY_GC_INCREMENT_STEP=4MB \
    PYPY_GC_MAX=256MB \
    WARMUP_SECONDS=15
WORKDIR /tmp
USER 10001:10001
COPY --from=server-pypy-build /opt/venv /opt/venv
EXPOSE 8080
ENTRYPOINT ["microservices-server"]

# Last, so that a plain `docker build .` gives the server (with BuildKit; the classic builder
# builds the PyPy stages above first).
FROM server AS default
