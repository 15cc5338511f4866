# drama-streaming: one image for the three services, the seeds and the load generator; the
# command picks the module: `drama` (default), `episode`, `stream`, `<service> seed`,
# `loadtest load --url ...`. Secrets come from the environment at run time, never from here.
# The default target is that image. `--target seed` builds the same image plus Debian's ffmpeg,
# for stream's seed only (playable HLS media instead of placeholders): no service carries an
# encoder it never runs.

# ---- builder: install the package and its dependencies into a venv. The slim base has no
# compiler: every dependency installs from a manylinux wheel.
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1 AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
WORKDIR /src
# .dockerignore lets in only what `pip install .` needs.
COPY . .
# `load`: the load generator's histograms (small); not `local`: moto (the embedded S3) is for
# `make run`, containers use MinIO or S3.
RUN /opt/venv/bin/pip install '.[load]'

# ---- seed: the same app and user, plus Debian's ffmpeg (and a font for its drawtext) for
# `python -m stream seed`. The Debian release is fixed by the base image; its package versions
# are not pinned, because Debian drops superseded versions from its mirrors (security updates)
# and a pinned build would then fail.
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1 AS seed

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg fonts-dejavu-core fontconfig \
    && fc-cache --system-only \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# A one-shot (compose one-shot, the Kubernetes seed Job): no port, nothing to probe.
ENTRYPOINT ["python", "-m"]
CMD ["stream", "seed"]

# ---- runtime: the venv and a non-root user, nothing else
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# drama-service HTTP and /metrics; episode-service and stream-service /metrics and probes.
EXPOSE 8080 9101 9102

# No HEALTHCHECK: the command picks one of several programs, each probed on its own port by
# compose (healthcheck:) and Kubernetes (liveness/readiness probes); a one-shot has none.
# checkov:skip=CKV_DOCKER_2:health is probed per service by compose and Kubernetes (see above)
ENTRYPOINT ["python", "-m"]
CMD ["drama"]
