# avfleet CLI image: the workflow's container steps (plan-index, verify-index, ...).
# checkov:skip=CKV_DOCKER_2: a batch image; Kubernetes ignores HEALTHCHECK (the operator's Deployment has probes)
# Build from the repository root: docker build -f images/avfleet.Dockerfile -t avfleet:0.1.0 .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/avfleet
COPY requirements.txt ./
# CPU torch first (the pinned build), then the pinned set; see DEPENDENCIES.md.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY jobs ./jobs
# src/avfleet/data links to these: the installed package carries them (avfleet.resources)
COPY manifests ./manifests
COPY infra ./infra
COPY operators ./operators
RUN pip install --no-deps . \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin avfleet
USER 10001:10001
ENTRYPOINT ["avfleet"]
