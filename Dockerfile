# One image for the API, the workers and beat; the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    AGGREGATOR_DATA_DIR=/var/lib/aggregator
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY aggregator ./aggregator
COPY workers ./workers
RUN pip install . && useradd --system --home /var/lib/aggregator aggregator \
    && mkdir -p /var/lib/aggregator && chown aggregator /var/lib/aggregator
COPY config ./config
COPY seeds ./seeds
USER aggregator
EXPOSE 8000
CMD ["aggregator", "serve", "--host", "0.0.0.0", "--port", "8000"]
