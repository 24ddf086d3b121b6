# One image for every matchnet service; the command picks the service (python -m services.<name>).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY matchnet ./matchnet
RUN pip install --no-cache-dir . && useradd --system --uid 10001 matchnet
USER 10001
ENV MATCHNET_SEEDS_HOST=0.0.0.0 MATCHNET_NEEDS_HOST=0.0.0.0 MATCHNET_MATCHER_HOST=0.0.0.0 \
    MATCHNET_NOTIFICATIONS_HOST=0.0.0.0 MATCHNET_DATA_DIR=/tmp/matchnet
CMD ["python", "-m", "services.seeds"]
