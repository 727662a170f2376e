# regcache's container image: one static binary on an empty base, run as
# an unprivileged user, with the registry image's volume and port, so the
# guide's line works with `regcache` as the image name:
#
#   docker run -d -p 80:5000 --restart=always --name=through-cache \
#     -e REGISTRY_PROXY_REMOTEURL=https://registry-1.docker.io \
#     -e REGISTRY_PROXY_USERNAME=... -e REGISTRY_PROXY_PASSWORD=... regcache
#
# Build it with `make image` (VERSION=1.2.3 IMAGE=name to choose the tag):
# the Makefile builds the binary on the host (CGO_ENABLED=0, -trimpath,
# version and commit stamped with -ldflags) and lays out the build context
# in build/image/ with the files below. This is not a `FROM golang` build
# stage on purpose: the build machines and CI of this project reach no
# image registry, so a Dockerfile that pulls a base image cannot be built
# or tested there, while `FROM scratch` needs nothing but the context. The
# result is the same static binary a golang stage would produce.
FROM scratch

ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="regcache" \
      org.opencontainers.image.description="Pull-through caching mirror for Docker Hub and other OCI registries" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="https://github.com/regcache/regcache" \
      org.opencontainers.image.documentation="https://github.com/regcache/regcache/blob/main/docs/quickstart.md"

# The user (65532, "regcache") for names in `ps` and file listings, the CA
# bundle for HTTPS upstreams, and the image's defaults (see defaults.yaml).
COPY passwd group /etc/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY defaults.yaml /etc/regcache/defaults.yaml
# An empty directory, so the volume starts owned by the user.
COPY --chown=65532:65532 data/ /var/lib/registry/
COPY regcache /regcache

# REGCACHE_DEFAULTS: the defaults file, below everything a user passes.
# REGCACHE_CONFIG_SEARCH: a Distribution config.yml mounted where the
# registry image reads it (v3's path first, then v2's) is read as it is.
ENV REGCACHE_DEFAULTS=/etc/regcache/defaults.yaml \
    REGCACHE_CONFIG_SEARCH=/etc/distribution/config.yml:/etc/docker/registry/config.yml

USER 65532:65532
VOLUME ["/var/lib/registry"]
# 5000: the registry API. 5001: the admin listener (dashboard, /metrics,
# /status, /readyz); publish it on the host's loopback only, if at all.
EXPOSE 5000 5001
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/regcache", "healthcheck"]
ENTRYPOINT ["/regcache"]
CMD ["serve"]
