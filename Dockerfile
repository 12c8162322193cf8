# syntax=docker/dockerfile:1
#
# Gatehouse's image, for those with a Docker daemon or BuildKit:
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse --short HEAD)" \
#     -t registry.example.com/gatehouse:TAG --push .
#
# `make image` builds the same image with neither a daemon nor a base image
# (tools/image, into bin/gatehouse-image.oci.tar). Keep the two in step:
# same build flags, user, paths, environment, ports and labels
# (tools/image's tests check this file for them).

ARG GO_VERSION=1.26
ARG VERSION=dev
ARG COMMIT=unknown

# Cross-compiled on the build machine's platform: no emulation needed.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION
ARG COMMIT
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" \
      -o /out/gatehouse ./cmd/gatehouse

# Static binary, CA certificates, /etc/passwd with nonroot (65532), /tmp
# (1777) and /home/nonroot: nothing is written outside /tmp, so the root
# filesystem can be read-only.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION
ARG COMMIT
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.source="https://github.com/gatehouse/gatehouse" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/gatehouse /gatehouse
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 4180/tcp 9180/tcp
ENTRYPOINT ["/gatehouse"]
CMD ["serve"]
