# One image for every matchnet service; MATCHNET_SERVICE (or `matchnet serve <name>`) picks the service.
# Build: docker build -t matchnet:latest .   Run: docker run -e MATCHNET_SERVICE=seeds … matchnet:latest

# ---- build: a virtual environment with matchnet and its dependencies ---------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/matchnet
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY matchnet ./matchnet
RUN /opt/matchnet/bin/pip install .
# The matcher's compiled kernels (numba), compiled now into the package's cache: the running image's
# root filesystem is read-only, and without a cache each start would compile them again (about 3 s).
RUN /opt/matchnet/bin/python -c "from services.matcher import kernels; kernels.warm_up()"

# ---- run: the virtual environment only, as an unprivileged user -------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/matchnet/bin:$PATH \
    MATCHNET_SEEDS_HOST=0.0.0.0 MATCHNET_NEEDS_HOST=0.0.0.0 MATCHNET_MATCHER_HOST=0.0.0.0 \
    MATCHNET_NOTIFICATIONS_HOST=0.0.0.0 MATCHNET_DATA_DIR=/tmp/matchnet MATCHNET_SERVICE=seeds
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin matchnet
COPY --from=build /opt/matchnet /opt/matchnet
WORKDIR /app
USER 10001:10001
EXPOSE 8001 8002 8003 8004
# Ready, not only alive: compose starts a dependant once this passes (Kubernetes uses its own probes).
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 CMD ["python", "-m", "matchnet.healthcheck", "readyz"]
# exec form: the service is PID 1 and gets SIGTERM itself (it drains, see shared/service.py).
CMD ["matchnet", "serve"]
