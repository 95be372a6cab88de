# tini-hot images. Targets:
#   tini-hot (the default, last stage): FROM scratch, only /tini-hot, to copy
#            into your own image: COPY --from=<this image> /tini-hot /tini-hot
#   demo:    tini-hot as ENTRYPOINT running the example server on :8080, with
#            a static busybox for `kill -HUP 1` and `sh` through kubectl exec.
#
#   podman build -t tini-hot .            (or docker build)
#   podman build -t tini-hot-demo --target demo .
#
# GO_IMAGE and BUSYBOX_IMAGE may point at local images on an offline
# machine; e2e/container_test.go does that.
ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm
ARG BUSYBOX_IMAGE=docker.io/library/busybox:1.37-musl

FROM ${GO_IMAGE} AS build
ENV PATH=/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin \
    GOPATH=/go GOCACHE=/go/cache CGO_ENABLED=0 GOFLAGS=-buildvcs=false
WORKDIR /src
COPY . .
ARG VERSION=dev
ARG COMMIT=
# Static binaries (CGO_ENABLED=0): they run FROM scratch.
RUN go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/tini-hot ./cmd/tini-hot && \
    go build -trimpath -ldflags "-s -w" -o /out/demo ./examples/demo

FROM ${BUSYBOX_IMAGE} AS busybox

FROM scratch AS demo
COPY --from=busybox /bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY --from=build /out/tini-hot /tini-hot
COPY --from=build /out/demo /demo
EXPOSE 8080
ENTRYPOINT ["/tini-hot", "-l", "http=tcp://:8080", "--ready", "notify", "--"]
CMD ["/demo"]

FROM scratch AS tini-hot
COPY --from=build /out/tini-hot /tini-hot
ENTRYPOINT ["/tini-hot"]
