# The retab-mcp image, built with uv from the lock file: `docker build -t retab-mcp .`
# Each `uv sync` below is the one CI runs (tests/test_kubernetes.py runs them on a copy).
FROM python:3.12-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-default-groups --no-install-project
COPY retab_mcp ./retab_mcp
RUN uv sync --locked --no-default-groups --no-editable

FROM python:3.12-slim
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin retab
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8000
ENTRYPOINT ["retab-mcp"]
CMD ["--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
