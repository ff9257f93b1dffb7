# One image for every authbench service; the command picks the service:
#   python -m auth_service | python -m resource_service | python -m gateway | locust ...
#
# BASE_IMAGE defaults to the public slim Python image. Registry-less hosts build a local
# base with scripts/build-base-images.sh (its /opt/venv already holds the pinned
# dependencies, so this build then needs no network) and pass
# BASE_IMAGE=authbench/base-python:local.
ARG BASE_IMAGE=python:3.12-slim

# The pinned requirements, pulled out of pyproject.toml: the dependency layer below is
# rebuilt only when this list changes, not when a lint setting in pyproject.toml does.
FROM ${BASE_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print("\n".join(p["build-system"]["requires"] + p["project"]["dependencies"]))' \
    > /requirements.txt

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0
WORKDIR /app

COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN (test -x /opt/venv/bin/python || python3 -m venv /opt/venv) \
 && pip install -q -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The code last: an edit rebuilds only these layers.
COPY pyproject.toml README.md ./
COPY authbench ./authbench
COPY auth_service ./auth_service
COPY resource_service ./resource_service
COPY gateway ./gateway
COPY loadtests ./loadtests
RUN pip install -q --no-deps --no-build-isolation . \
 && rm -rf build ./*.egg-info \
 && groupadd --gid 10001 authbench \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin authbench

LABEL org.opencontainers.image.title="authbench" \
      org.opencontainers.image.description="authbench services: auth, resource replica, gateway, Locust"

# Unprivileged at run time; the code under /app stays owned by root, read-only to it.
USER 10001:10001
CMD ["python", "-m", "gateway"]
