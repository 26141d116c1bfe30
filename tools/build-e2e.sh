#!/usr/bin/env bash
# Build what `make e2e` adds to tools/build.sh's set, at the versions tools/k8s/go.mod pins, with
# the ordinary go command, into $AVFLEET_TOOLS (default ~/.cache/avfleet-tools). Idempotent.
#
#   kubelet, kube-scheduler, kube-controller-manager, kube-proxy   the rest of a one-node
#             cluster (tools/k8s/go.mod, the same k8s.io/kubernetes as kube-apiserver): 1.34
#             still runs on cgroup v1 with `failCgroupV1: false`, which this machine needs
#   argoexec  Argo's executor (tools/go.mod's argo-workflows), static, for the executor image;
#             the published module lacks one Linux file, which tools/argoexec supplies
#   coredns   the cluster's DNS (tools/coredns/go.mod: its own module, its Kubernetes client
#             libraries are newer than kubernetes 1.34's), a host process on the node's address
#   training-operator   Kubeflow's (tools/kubeflow/go.mod, v1.8.1: PyTorchJob), a host process
#   spark-operator      Kubeflow's (tools/spark-operator/go.mod, v2.4.0: SparkApplication), its
#             controller and its webhook as two host processes
#   pause     a pod's sandbox process (tools/pause, avfleet's own 30 lines of Go), packed into
#             the pause image by tests/e2e/cluster.py: there is no registry to pull one from
set -euo pipefail
cd "$(dirname "$0")"
OUT=${AVFLEET_TOOLS:-$HOME/.cache/avfleet-tools}
mkdir -p "$OUT/bin"

k8s_version=$(cd k8s && go list -m -f '{{.Version}}' k8s.io/kubernetes)
for cmd in kubelet kube-scheduler kube-controller-manager kube-proxy; do
  bin="$OUT/bin/$cmd-$k8s_version"
  if [ ! -x "$bin" ]; then
    echo "building $cmd $k8s_version (minutes on 2 cores; less after kube-apiserver)..." >&2
    (cd k8s && go build -trimpath -o "$bin.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$bin.tmp" "$bin"
  fi
  ln -sf "$bin" "$OUT/bin/$cmd"
done

module=github.com/argoproj/argo-workflows/v4
argo_version=$(go list -m -f '{{.Version}}' "$module")
exec_bin="$OUT/bin/argoexec-$argo_version"
if [ ! -x "$exec_bin" ]; then
  echo "building argoexec $argo_version (static)..." >&2
  go mod download "$module"
  work="$OUT/src/argoexec-$argo_version"
  rm -rf "$work"
  cp -r "$(go list -m -f '{{.Dir}}' "$module")" "$work"  # writable: the module cache is not
  chmod -R u+w "$work"
  # The module lacks the Linux file of its osspecific signal helpers (see the file's header).
  cp argoexec/signal_linux.go "$work/workflow/executor/osspecific/signal_linux.go"
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -o "$exec_bin.tmp" ./cmd/argoexec)
  mv "$exec_bin.tmp" "$exec_bin"
  rm -rf "$work"
fi
ln -sf "$exec_bin" "$OUT/bin/argoexec"

coredns_version=$(cd coredns && go list -m -f '{{.Version}}' github.com/coredns/coredns)
coredns_bin="$OUT/bin/coredns-$coredns_version"
if [ ! -x "$coredns_bin" ]; then
  echo "building coredns $coredns_version..." >&2
  (cd coredns && go build -trimpath -o "$coredns_bin.tmp" github.com/coredns/coredns)
  mv "$coredns_bin.tmp" "$coredns_bin"
fi
ln -sf "$coredns_bin" "$OUT/bin/coredns"
to_version=$(cd kubeflow && go list -m -f '{{.Version}}' github.com/kubeflow/training-operator)
to_bin="$OUT/bin/training-operator-$to_version"
if [ ! -x "$to_bin" ]; then
  echo "building training-operator $to_version..." >&2
  (cd kubeflow && go build -trimpath -o "$to_bin.tmp" github.com/kubeflow/training-operator/cmd/training-operator.v1)
  mv "$to_bin.tmp" "$to_bin"
fi
ln -sf "$to_bin" "$OUT/bin/training-operator"
so_version=$(cd spark-operator && go list -m -f '{{.Version}}' github.com/kubeflow/spark-operator/v2)
so_bin="$OUT/bin/spark-operator-$so_version"
if [ ! -x "$so_bin" ]; then
  echo "building spark-operator $so_version..." >&2
  (cd spark-operator && go build -trimpath -o "$so_bin.tmp" github.com/kubeflow/spark-operator/v2/cmd/operator)
  mv "$so_bin.tmp" "$so_bin"
fi
ln -sf "$so_bin" "$OUT/bin/spark-operator"
pause_hash=$(cat pause/go.mod pause/main.go | sha256sum | cut -c1-12)
pause_bin="$OUT/bin/pause-$pause_hash"
if [ ! -x "$pause_bin" ]; then
  (cd pause && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$pause_bin.tmp" .)
  mv "$pause_bin.tmp" "$pause_bin"
fi
ln -sf "$pause_bin" "$OUT/bin/pause"
