# syntax=docker/dockerfile:1
# tekton-zscaler-webhook image: `docker build -t tekton-zscaler-webhook .`
# Node major (20) matches package.json engines; the runtime has no shell and no package manager.

# --- build: compile TypeScript and the native addons (better-sqlite3, zstd-napi, native/jcs), then drop dev dependencies and build leftovers ---
FROM node:20-bookworm-slim AS build
# better-sqlite3 and zstd-napi compile from source with node-gyp when their prebuilt binaries cannot be downloaded;
# native/jcs (objectDigest from the raw review: simdjson + RFC 8785) always does.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies first, so source edits reuse the cached (slow, ~60 s) npm ci layer.
# .npmrc: install-links, so the local addon package is installed as a copy (built inside node_modules).
COPY package.json package-lock.json .npmrc ./
COPY native ./native
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY webhook ./webhook
# The server's dev-certificate code reuses the certs library (tsc follows the import into certs/).
COPY certs/*.ts ./certs/
# `npm run build` also bundles the auditor console (webhook/console/ui/) into dist/console/.
COPY scripts/build-console.ts scripts/slim-node-modules.sh ./scripts/
# Then only what runs: production dependencies, without the build-only packages and the addons'
# sources and object files (scripts/slim-node-modules.sh; license files stay).
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && sh scripts/slim-node-modules.sh node_modules

# --- runtime: distroless Node 20 on Debian 12 (same glibc as bookworm, so the addon loads) ---
FROM gcr.io/distroless/nodejs20-debian12:nonroot
LABEL org.opencontainers.image.title="tekton-zscaler-webhook" \
      org.opencontainers.image.description="Admission webhook: identity-mapped Tekton runs, Zscaler tunnel injection, tamper-evident decision records" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
ENV NODE_ENV=production
# Owned by root and not writable by the app user: the code cannot be changed at run time.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# 65532 = distroless "nonroot"; numeric so runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# admission (HTTPS), audit API, metrics
EXPOSE 8443 8444 9090
ENTRYPOINT ["/nodejs/bin/node", "dist/webhook/main.js"]
CMD ["serve", "--config", "/etc/tzw/config.yaml"]
