# nskit in a container: the article's `docker run -it --privileged ...` box,
# with the kit and its pinned tools in /nskit. Build with `docker build .`,
# or let `make shell` / `make docker-test` (tools/docker-run) do it.
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NSKIT_IN_CONTAINER=1

# What the article's examples use: ip, ps, mount/unshare/nsenter, and make for
# the kit's own targets; busybox-static for the small root of steps 10 and 11
# (make rootfs). ca-certificates so pip can speak TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-venv iproute2 procps util-linux make busybox-static ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Optional extra CA certificates (*.crt), for networks whose proxy intercepts
# TLS: put them in tools/ca-certificates/ before building. Empty by default.
COPY tools/ca-certificates/ /usr/local/share/ca-certificates/nskit/
RUN update-ca-certificates >/dev/null

# Package index settings, when the default (PyPI) is not the one to use.
# Passed by tools/docker-run from the same variables or pip config on the host.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST

WORKDIR /nskit
# The venv first and on its own, so editing the kit does not reinstall it. The
# stamp is the one the Makefile's setup target makes, so `make test` and
# `make step-NN` inside the container use this venv as it is.
COPY requirements.txt ./
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    python3 -m venv .venv \
 && PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    .venv/bin/pip install --quiet --no-cache-dir -r requirements.txt \
 && touch .venv/.installed

COPY . ./
# The stamp must stay newer than requirements.txt after the copy above.
RUN touch .venv/.installed

CMD ["bash"]
