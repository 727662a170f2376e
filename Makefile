# regcache's builds. `make` builds bin/regcache; `make image` the container
# image (Dockerfile); `make test` runs every test as .ci/run does.

# The version stamped into the binary and the image's tag: the chart's
# appVersion by default, so `make image` builds the regcache:<appVersion>
# the Helm chart, the Nomad job and docs/quickstart.md name.
VERSION   ?= $(shell sed -n 's/^appVersion: *"\(.*\)"/\1/p' deploy/helm/regcache/Chart.yaml)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE     ?= regcache
DOCKER    ?= docker
GOARCH    ?= $(shell go env GOARCH)
# The CA bundle copied into the image, for HTTPS upstreams (Debian's
# ca-certificates).
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
CONTEXT   ?= build/image

pkg     := github.com/regcache/regcache/internal/cli
LDFLAGS := -s -w -X $(pkg).version=$(VERSION) -X $(pkg).commit=$(COMMIT)

.PHONY: build image image-context test clean

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/regcache ./cmd/regcache

# The build context: the static Linux binary and the files the Dockerfile
# copies, nothing else.
image-context:
	@test -r "$(CA_BUNDLE)" || { echo "no CA bundle at $(CA_BUNDLE): install ca-certificates or set CA_BUNDLE" >&2; exit 1; }
	rm -rf "$(CONTEXT)"
	mkdir -p "$(CONTEXT)/data"
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) go build -trimpath -ldflags "$(LDFLAGS)" -o "$(CONTEXT)/regcache" ./cmd/regcache
	cp "$(CA_BUNDLE)" "$(CONTEXT)/ca-certificates.crt"
	cp deploy/docker/passwd deploy/docker/group deploy/docker/defaults.yaml "$(CONTEXT)/"

image: image-context
	$(DOCKER) build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
		-t $(IMAGE):$(VERSION) -f Dockerfile "$(CONTEXT)"

test:
	go test -race -timeout 30m ./...

clean:
	rm -rf bin build
