# syntax=docker/dockerfile:1
#
# The API and worker image (one image, two commands; migrations too):
#   docker build -t imagequeue .
#   docker run --env-file .env imagequeue                               # API on :3000
#   docker run --env-file .env imagequeue node dist/worker/main.js      # a worker (/metrics on :9464)
#   docker run --env-file .env imagequeue node dist/scripts/migrate.js  # create the database, apply migrations
# docker-compose.yml runs all of them. TypeScript is compiled once here
# (npm run build), so the running processes need neither tsc nor tsx.

ARG NODE_IMAGE=node:22-bookworm-slim

# 1. every dependency, from the lockfile (sharp and onnxruntime-node ship
#    prebuilt glibc binaries; ONNXRUNTIME_NODE_INSTALL=skip skips onnxruntime's
#    optional GPU download in its install script)
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

# 2. compile TypeScript to dist/
FROM deps AS build
COPY . .
RUN npm run build

# 3. production dependencies only
FROM deps AS prod-deps
RUN npm prune --omit=dev --no-audit --no-fund

# 4. the runtime: compiled code, production node_modules, a non-root user
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    WORKER_METRICS_HOST=0.0.0.0 \
    WORKER_METRICS_PORT=9464 \
    STORAGE_LOCAL_DIR=/app/data/storage
WORKDIR /app
COPY --from=prod-deps --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
# the vendors' dashboard (/dashboard): static files the API serves as they are
COPY --from=build --chown=node:node /app/web ./web
COPY --chown=node:node package.json ./
# Local storage lives in a volume shared by the API and the workers; it is
# created here so a fresh named volume is owned by the non-root user.
RUN mkdir -p /app/data/storage && chown -R node:node /app/data
USER node
EXPOSE 3000 9464
# Health checks are per service in docker-compose.yml: the API answers
# GET /healthz on PORT, a worker GET /healthz on WORKER_METRICS_PORT.
CMD ["node", "dist/backend/server.js"]
