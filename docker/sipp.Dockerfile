# syntax=docker/dockerfile:1
# SIPp (Debian's sip-tester) for the compose demo's "pbx" and "trunk" peers.
#   docker build -f docker/sipp.Dockerfile -t sipguard-sipp docker
FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends sip-tester \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10002 sipp \
    && useradd --system --uid 10002 --gid sipp --create-home --home-dir /home/sipp sipp
# Scenario files are bind-mounted (tests/integration/scenarios -> /scenarios); SIPp writes its
# trace files into the working directory.
WORKDIR /home/sipp
USER 10002:10002
ENTRYPOINT ["sipp"]
CMD ["-v"]
