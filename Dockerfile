# syntax=docker/dockerfile:1
#
# Container image of usersigd (the gRPC server) and usersig (the offline
# operator CLI): static binaries on distroless, running as 65532:65532.
#
#   docker build -t usersig/usersigd:dev .
#
# NOTE: this file has not been built on the machine it was written on (no
# Docker engine there); it is kept simple and conventional on purpose. It
# needs BuildKit (the default builder since Docker 23) for the cache mounts
# and the cross-compiling --platform line.
#
# Pin both base images by digest in production (FROM image:tag@sha256:...),
# and let a bot bump the digests; tags move.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local

# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/usersigd ./cmd/usersigd && \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/usersig ./cmd/usersig

# Static base: CA certificates, /etc/passwd with nonroot (65532), tzdata; no
# shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/usersigd /usersigd
COPY --from=build /out/usersig /usersig
USER 65532:65532
# 50051: gRPC (usersig.v1.UserSigService, grpc.health.v1.Health)
# 9090: HTTP /metrics, /healthz, /readyz
EXPOSE 50051 8080 9090
ENTRYPOINT ["/usersigd"]
CMD ["--config", "/etc/usersig/config.yaml"]
