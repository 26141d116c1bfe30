# avfleet bench agent for a Xavier test bench (aarch64, JetPack 5: CUDA 11.4, TensorRT 8.5).
# Build on or for the device: docker buildx build --platform linux/arm64 -f images/bench.Dockerfile .
# Run with the NVIDIA runtime: docker run --runtime nvidia -e AVFLEET_BENCH_TOKEN=... -p 8470:8470
# The base image carries JetPack's CUDA, cuDNN, TensorRT and its PyTorch (the engine's CUDA
# buffers) for JetPack's own Python 3.8; TensorRT's bindings exist for no other Python there,
# so the agent runs on it: `python3 -m avfleet.bench.agent_main`, avfleet's source on the
# path rather than pip-installed (pyproject's requires-python is the cluster images' 3.11).
# The agent's modules stay Python 3.8 code (tests/unit/test_images.py checks them with vermin).
FROM nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/opt/avfleet/src

WORKDIR /opt/avfleet
# onnx for the model check; onnxruntime to compare on the device's CPU when asked; fsspec and
# s3fs to read releases from S3; rich for progress. Each the last release for Python 3.8.
RUN pip install onnx==1.16.2 onnxruntime==1.16.3 fsspec==2024.6.1 s3fs==2024.6.1 \
    rich==13.9.4 \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin avfleet \
    && mkdir -p /var/cache/avfleet/engines \
    && chown 10001:10001 /var/cache/avfleet/engines
COPY src ./src
USER 10001:10001
EXPOSE 8470
HEALTHCHECK --interval=30s --timeout=5s CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8470/healthz', timeout=4)"]
ENTRYPOINT ["python3", "-m", "avfleet.bench.agent_main", "--host", "0.0.0.0", "--port", "8470", "--runtime", "tensorrt", "--cache", "/var/cache/avfleet/engines"]
CMD ["--target", "xavier-agx-jp5", "--allow", "/var/lib/avfleet/releases"]
