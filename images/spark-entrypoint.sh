#!/bin/sh
# avfleet Spark image's entrypoint: what Spark's Kubernetes scheduler runs in the pods it makes.
#
#   driver ARGS...    the driver of a cluster-mode submission (spark-operator's, or
#                     spark-submit --deploy-mode cluster): spark-submit in client mode, bound to
#                     the pod's address, which Spark gives as SPARK_DRIVER_BIND_ADDRESS
#   executor          an executor: Spark's KubernetesExecutorBackend, configured by the
#                     environment the driver gives the pod (SPARK_DRIVER_URL, SPARK_EXECUTOR_*,
#                     SPARK_APPLICATION_ID, SPARK_JAVA_OPT_<n>, SPARK_CLASSPATH)
#   anything else     run as given (a workflow step acting as a client-mode driver)
#
# Written for avfleet (its own, not Apache's image's script): the same contract, from Spark's
# "Running on Kubernetes" documentation and the variables Spark 3.5 sets on its pods.
set -eu

case "${1:-}" in
driver)
    shift
    exec "$SPARK_HOME/bin/spark-submit" \
        --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
        --deploy-mode client "$@"
    ;;
executor)
    shift
    # Spark passes the executor's JVM options one per variable, in order.
    set --
    i=0
    while :; do
        opt=$(printenv "SPARK_JAVA_OPT_$i" || true)
        [ -n "$opt" ] || break
        set -- "$@" "$opt"
        i=$((i + 1))
    done
    exec "${JAVA_HOME}/bin/java" "$@" \
        -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
        -cp "${SPARK_CLASSPATH:-}:${SPARK_HOME}/jars/*" \
        org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
        --driver-url "${SPARK_DRIVER_URL}" \
        --executor-id "${SPARK_EXECUTOR_ID}" \
        --cores "${SPARK_EXECUTOR_CORES}" \
        --app-id "${SPARK_APPLICATION_ID}" \
        --hostname "${SPARK_EXECUTOR_POD_IP}" \
        --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
        --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
*)
    exec "$@"
    ;;
esac
