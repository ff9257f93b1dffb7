# Two images from one Dockerfile; the target picks which:
#
#   --target service   auth, resource replicas and gateway: authcore + the three services
#                      and only their runtime pins (pyproject's `dependencies`), no pip.
#                      The command picks the service: python -m auth_service |
#                      python -m resource_service | python -m gateway
#   --target load      the harness: Locust, the locustfiles and the `authbench` CLI
#                      (runtime + the `harness` extra); compose's profile `load`
#
# BASE_IMAGE and LOAD_BASE_IMAGE default to the public slim Python image. Registry-less
# hosts make local bases with scripts/build-base-images.sh, whose /opt/venv already holds
# each image's pins (so these builds then need no network): authbench/base-python:local
# and authbench/base-python-load:local (scripts/setup-docker.sh writes them into .env).
ARG BASE_IMAGE=python:3.12-slim
ARG LOAD_BASE_IMAGE=python:3.12-slim

# The pinned requirements of both images, pulled out of pyproject.toml: a dependency layer
# below is rebuilt only when its list changes, not when a lint setting in pyproject does.
FROM ${BASE_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml scripts/image_requirements.py ./
RUN mkdir /requirements \
 && python3 image_requirements.py list pyproject.toml service > /requirements/service.txt \
 && python3 image_requirements.py list pyproject.toml load > /requirements/load.txt \
 && cp image_requirements.py /requirements/

# --- the service image (first: a builder without BuildKit builds only up to the target) ---
FROM ${BASE_IMAGE} AS service
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    HOST=0.0.0.0
WORKDIR /app
COPY --from=requirements /requirements/image_requirements.py /requirements/service.txt /tmp/
RUN python3 /tmp/image_requirements.py install /tmp/service.txt --drop-pip \
 && rm /tmp/image_requirements.py /tmp/service.txt \
 && groupadd --gid 10001 authbench \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin authbench
# The code last: an edit rebuilds only these layers. Run from /app (PYTHONPATH), not
# installed: no pip in this image.
COPY authcore ./authcore
COPY auth_service ./auth_service
COPY resource_service ./resource_service
COPY gateway ./gateway
LABEL org.opencontainers.image.title="authbench" \
      org.opencontainers.image.description="authbench services: auth, resource replica, gateway"
# Unprivileged at run time; the code under /app stays owned by root, read-only to it.
USER 10001:10001
CMD ["python", "-m", "gateway"]

# --- the load/harness image ---------------------------------------------------------------
FROM ${LOAD_BASE_IMAGE} AS load
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0
WORKDIR /app
COPY --from=requirements /requirements/image_requirements.py /requirements/load.txt /tmp/
RUN python3 /tmp/image_requirements.py install /tmp/load.txt \
 && rm /tmp/image_requirements.py /tmp/load.txt \
 && groupadd --gid 10001 authbench \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin authbench
COPY pyproject.toml README.md ./
COPY authcore ./authcore
COPY authbench ./authbench
COPY auth_service ./auth_service
COPY resource_service ./resource_service
COPY gateway ./gateway
COPY loadtests ./loadtests
RUN pip install -q --no-deps --no-build-isolation . \
 && rm -rf build ./*.egg-info
LABEL org.opencontainers.image.title="authbench-load" \
      org.opencontainers.image.description="authbench harness: Locust, the locustfiles, the authbench CLI"
USER 10001:10001
CMD ["locust", "--help"]
