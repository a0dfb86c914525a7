# claude-console: the HTTP API (and the CLI, for `docker exec ... python -m console login`).
#
#   docker build -t claude-console .
#   docker compose up -d            # with PostgreSQL: see docker-compose.yml and the README (Deployment)
#
# The image runs as an unprivileged user. Tokens live in PostgreSQL when DATABASE_URL is set;
# the file tier (/app/.litellm, a volume) holds them otherwise and is the fallback.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

# The build context is only what the package needs (see .dockerignore).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY console ./console
COPY styles ./styles
COPY migrations ./migrations
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install . \
 && /opt/venv/bin/python -m console --version

ENV PATH=/opt/venv/bin:$PATH \
    HOME=/app \
    CLAUDE_TOKEN_FILE=/app/.litellm/claude_tokens.json

RUN mkdir -p /app/.litellm \
 && chown -R app:app /app \
 && chmod 0700 /app/.litellm
WORKDIR /app
USER app
VOLUME ["/app/.litellm"]
EXPOSE 4000

# Health is the server's own answer: `health --url` asks the running API's /health (exit 0 when
# the primary storage tier is up, 3 when it is down, 1 when the server does not answer).
# `python -m console status` would be wrong here: it exits 1 whenever no user is logged in yet,
# which says nothing about whether this container works.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["python", "-m", "console", "health", "--url", "http://127.0.0.1:4000/health"]

CMD ["python", "-m", "console", "serve", "--host", "0.0.0.0", "--port", "4000"]
