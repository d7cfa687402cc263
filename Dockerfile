# syntax=docker/dockerfile:1

# Build stage: a static, stripped chatd binary. The go build line is the one
# CI runs (deploy/dockerfile_test.go keeps the two the same).
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/chatd ./cmd/chatd

# Final stage: no shell, no package manager, CA certificates for the OAuth
# providers and a non-root user (uid 65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/chatd /chatd
USER nonroot:nonroot
ENV CHAT_ADDR=:8080
EXPOSE 8080
# No shell in the image: the binary checks its own /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/chatd","healthcheck"]
ENTRYPOINT ["/chatd"]
