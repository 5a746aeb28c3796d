# The Python processes (dashboard, simulator, matcher, zones) in one image; `docker compose up` picks the
# process with each service's command. Browser libraries come from npm, as on a developer machine.
FROM node:20-slim AS assets
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY --from=assets /app/node_modules ./node_modules
COPY fleet ./fleet
COPY bus ./bus
COPY dashboard ./dashboard
COPY simulator ./simulator
COPY matcher ./matcher
COPY zones ./zones
COPY templates ./templates
COPY static ./static
RUN useradd --create-home fleet
USER fleet
CMD ["python", "-m", "dashboard"]
