# shiftguard as a sidecar in front of an external PostgreSQL (no embedded server in the image).
#   docker build -t shiftguard .
#   docker run -e SHIFTGUARD_BACKEND_DSN=postgresql://sg:secret@db:5432/dev \
#              -e SHIFTGUARD_ADMIN_PASSWORD=... -p 5439:5439 -p 5440:5440 shiftguard
# GEOMETRY and GEOGRAPHY need PostGIS on that database server (not in this image): shiftguard
# installs it into each database at its start when the server has it (docs/external-postgresql.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

RUN useradd --system --create-home --home-dir /var/lib/shiftguard --uid 10001 shiftguard

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY proxy ./proxy
COPY config ./config
RUN pip install . && rm -rf /root/.cache

USER shiftguard
# The self-signed TLS certificate is made here on first start unless tls.cert/tls.key are set.
ENV SHIFTGUARD_DATA_DIR=/var/lib/shiftguard
EXPOSE 5439 5440

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:5440/readyz', timeout=2).status != 200)"

# SHIFTGUARD_ADMIN_PASSWORD must be set: with the default dev password shiftguard refuses to
# listen on 0.0.0.0.
CMD ["sh", "-c", "exec shiftguard serve --backend \"$SHIFTGUARD_BACKEND_DSN\" --listen 0.0.0.0:5439 --api-listen 0.0.0.0:5440"]
