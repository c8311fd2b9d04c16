# oms-exporter container image. docs/deploy.md, section "Container", shows how to build
# and run it. Configure with OMS_EXPORTER_* variables or a YAML file passed with
# --config; give the OMS password as a file (OMS_EXPORTER_OMS_PASSWORD_FILE).

# Build stage: install the package and its dependencies into a virtualenv that the
# runtime stage copies whole, so no pip cache or source tree ships. Byte-code is
# compiled here because the running container cannot write it (read-only root FS).
FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY oms_exporter ./oms_exporter
RUN python -m venv /opt/oms-exporter \
    && /opt/oms-exporter/bin/pip install --no-cache-dir . \
    && /opt/oms-exporter/bin/python -m compileall -q /opt/oms-exporter/lib

# Runtime stage: the same base image (the virtualenv points at its /usr/local/bin/python),
# a numeric non-root user, nothing written at run time so the root FS may be read-only.
FROM python:3.12-slim
LABEL org.opencontainers.image.title="oms-exporter" \
      org.opencontainers.image.description="Prometheus exporter for OceanBase Migration Service (OMS)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/oms-exporter /opt/oms-exporter
ENV PATH=/opt/oms-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532 is the conventional "nonroot" id of distroless images; it has no passwd entry
# and owns no file in the image.
USER 65532:65532
EXPOSE 18089
# /healthz answers 200 while the process serves HTTP, needs no auth and never calls OMS.
# slim images have no curl: ask with Python, on the port of OMS_EXPORTER_LISTEN_ADDRESS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('OMS_EXPORTER_LISTEN_ADDRESS', ':18089').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["oms-exporter"]
