# keypool container image: `keypool serve` as a non-root user, nothing written outside KEYPOOL_DATA_DIR and /tmp
# (read-only root filesystem friendly). Not built by CI here (no Docker engine on these machines);
# test/deploy/container.test.ts checks what can be checked without one: every COPY source exists and is not
# excluded by .dockerignore, and the runtime layout below starts `keypool serve` and passes the health check.
#
#   docker build -t keypool:0.1.0 .
#   docker run --read-only --tmpfs /tmp -e DATABASE_URL=... -e KEYPOOL_ENCRYPTION_KEYS=... -e KEYPOOL_KEY_PEPPER=... \
#     -e KEYPOOL_ADMIN_LISTEN=0.0.0.0:9901 -e KEYPOOL_ADMIN_TOKEN=... -p 9901:9901 keypool:0.1.0

FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY web ./web
COPY scripts/build-ui.mjs ./scripts/build-ui.mjs
# The server, then the dashboard bundle (dist/ui), before the development dependencies that build them are pruned.
RUN node node_modules/typescript-native/bin/tsc -p tsconfig.build.json \
 && node scripts/build-ui.mjs \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-slim
ENV NODE_ENV=production \
    KEYPOOL_DATA_DIR=/var/lib/keypool
WORKDIR /app
# Runtime layout: dist/src finds sql/ and proto/ by walking up to the directory holding them.
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/dist/ui ./dist/ui
COPY sql ./sql
COPY proto ./proto
COPY deploy/docker/readyz.mjs ./readyz.mjs
RUN chmod 0755 dist/src/cli/main.js \
 && ln -s /app/dist/src/cli/main.js /usr/local/bin/keypool \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/keypool
# A fixed numeric user (Kubernetes runAsNonRoot can check it); it owns only the embedded data directory.
USER 10001:10001
VOLUME ["/var/lib/keypool"]
EXPOSE 50051 9901
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["node", "/app/readyz.mjs"]
ENTRYPOINT ["keypool"]
CMD ["serve"]
