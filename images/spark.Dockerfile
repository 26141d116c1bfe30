# syntax=docker/dockerfile:1.7
# avfleet Spark image: driver and executors of SparkApplications (spark-operator).
# checkov:skip=CKV_DOCKER_2: a batch image; Kubernetes ignores HEALTHCHECK and spark-operator watches the driver
# checkov:skip=CKV_DOCKER_4: ADD --checksum verifies each download against its published digest (COPY cannot fetch)
# The repository sits at /opt/avfleet, so mainApplicationFile is local:///opt/avfleet/jobs/<job>.py.
# Apache's Spark image runs Ubuntu 22.04's Python 3.10 and avfleet needs 3.11 (pyproject's
# requires-python): Spark and its Java are copied from it onto the same Python base as the CLI
# image. The entrypoint (what Spark's driver and executor pods run, under the spark-operator or
# Spark's own Kubernetes scheduler) is avfleet's, images/spark-entrypoint.sh.
FROM apache/spark:3.5.3-scala2.12-java17-python3-ubuntu AS spark

FROM python:3.11.7-slim-bookworm
COPY --from=spark /opt/java/openjdk /opt/java/openjdk
COPY --from=spark /opt/spark /opt/spark
ENV JAVA_HOME=/opt/java/openjdk \
    SPARK_HOME=/opt/spark \
    PATH=/opt/java/openjdk/bin:/opt/spark/bin:$PATH \
    PYSPARK_PYTHON=/usr/local/bin/python3
# Spark's scripts use ps (procps), as in Apache's image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends procps=2:4.0.2-3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 185 --no-create-home --shell /usr/sbin/nologin spark
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/avfleet
COPY requirements.txt ./
# pyspark comes from the image; S3 output via s3a needs hadoop-aws on the classpath.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && grep -v '^pyspark' requirements.txt > /tmp/requirements-spark.txt \
    && pip install -r /tmp/requirements-spark.txt \
    && rm /tmp/requirements-spark.txt
# sha256 of each jar as Maven Central serves it (its published sha1 checked too, 2026-12-01).
ADD --chown=185:185 --checksum=sha256:53f9ae03c681a30a50aa17524bd9790ab596b28481858e54efd989a826ed3a4a \
    https://repo1.maven.org/maven2/org/apache/hadoop/hadoop-aws/3.3.4/hadoop-aws-3.3.4.jar /opt/spark/jars/
ADD --chown=185:185 --checksum=sha256:873fe7cf495126619997bec21c44de5d992544aea7e632fdc77adb1a0915bae5 \
    https://repo1.maven.org/maven2/com/amazonaws/aws-java-sdk-bundle/1.12.262/aws-java-sdk-bundle-1.12.262.jar /opt/spark/jars/
COPY pyproject.toml README.md ./
COPY src ./src
COPY jobs ./jobs
# src/avfleet/data links to these: the installed package carries them (avfleet.resources)
COPY manifests ./manifests
COPY infra ./infra
COPY images/spark-entrypoint.sh /opt/entrypoint.sh
RUN pip install --no-deps . \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin avfleet
USER 10001:10001
ENTRYPOINT ["/opt/entrypoint.sh"]
