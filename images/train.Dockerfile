# avfleet training image: the PyTorchJob replicas (train.yaml, nas.yaml, sweep.yaml) run
#   python3 -m avfleet.train.launch torchrun ... jobs/train.py
# on GPUs with NCCL. PyPI's torch 2.13.0 is the CUDA build and brings its CUDA runtime,
# cuDNN and NCCL as nvidia-* wheels, so the base needs only the driver's libraries, which the
# NVIDIA container runtime mounts from the node.
# checkov:skip=CKV_DOCKER_2: a batch image; Kubeflow watches the replicas' exit codes
# Build from the repository root: docker build -f images/train.Dockerfile -t avfleet-train:0.1.0 .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

WORKDIR /opt/avfleet
COPY requirements.txt ./
# torch first (the pinned CUDA build with its NCCL), then the pinned set; see DEPENDENCIES.md.
RUN pip install torch==2.13.0 \
    && pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY jobs ./jobs
# src/avfleet/data links to these: the installed package carries them (avfleet.resources)
COPY manifests ./manifests
COPY infra ./infra
RUN pip install --no-deps . \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin avfleet
USER 10001:10001
ENTRYPOINT ["python3", "-m", "avfleet.train.launch"]
