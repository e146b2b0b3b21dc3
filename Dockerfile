# syntax=docker/dockerfile:1
# helmdeck-operator image: the `helmdeck-operator` console script in a virtualenv, run as a
# non-root user. Build:  docker build -t helmdeck-operator:dev .
#
# Both stages start from the same base, pinned by exact tag AND by the digest of its
# multi-architecture index (amd64 and arm64 resolve from it). To move to a newer patch release:
#   docker buildx imagetools inspect python:3.11.N-slim-bookworm   # prints the index digest
# and update both FROM lines (tests/delivery/test_dockerfile.py checks they stay identical).

# ---- builder: build the wheel, install it and its pinned dependencies into /opt/venv -------
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel and its pins need (.dockerignore allows nothing else into the context).
COPY pyproject.toml README.md requirements.lock ./
COPY operator/ operator/

# What ships is pinned: the runtime dependencies come from requirements.lock (`make lock`),
# every file checked against its sha256 (--require-hashes), then the wheel alone (--no-deps),
# so nothing unpinned enters the venv; `pip check` fails the build if the wheel needs
# something the lock lacks. Every pinned dependency ships manylinux wheels for CPython 3.11 on
# amd64 and arm64 (grpcio, protobuf, pydantic-core...), so no compiler is needed;
# --only-binary makes that a build error rather than a silent source build. pip and
# setuptools are removed from the venv afterwards: the final image has no installer.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock \
 && /opt/venv/bin/pip install --no-deps --no-index /wheels/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/helmdeck-operator version

# ---- final: the venv on a clean base, nothing else -------------------------------------------
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/helmdeck/helmdeck-operator

LABEL org.opencontainers.image.title="helmdeck-operator" \
      org.opencontainers.image.description="Kubernetes operator running HelmdeckSession and SidecarPolicy objects as NVIDIA OpenShell sandboxes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"

# The base image's own pip stays (it is part of the pinned base), but nothing here runs it.
COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# 65532: the conventional "nonroot" uid/gid (distroless); no home directory, no shell login.
# Numeric so Kubernetes' runAsNonRoot can verify it without an /etc/passwd lookup.
USER 65532:65532
WORKDIR /

# 8080: health endpoint (liveness/readiness); 9090: Prometheus metrics.
EXPOSE 8080 9090

ENTRYPOINT ["helmdeck-operator"]
CMD ["run"]
