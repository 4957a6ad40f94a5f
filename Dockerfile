# syntax=docker/dockerfile:1
# One image for the web server, the Celery workers and beat (compose.yaml).
#   docker build -t mmeval:cpu .                                  # CPU torch (web, default queue, beat)
#   docker build -t mmeval:gpu --build-arg TORCH_VARIANT=cu128 .  # CUDA torch (the GPU worker)
# TORCH_VARIANT names a PyTorch wheel index (https://download.pytorch.org/whl/<variant>):
# "cpu", or the CUDA build that matches the GPU host's driver. The CUDA libraries come with
# the wheel; the host needs only the NVIDIA driver and the NVIDIA Container Toolkit.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG TORCH_VARIANT=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 mmeval
WORKDIR /app

# Runtime packages only (requirements.txt lists the test tools after "# Tests"); torch first,
# from the index of the chosen build, at the version requirements.txt pins.
COPY requirements.txt .
RUN sed '/^# Tests/,$d' requirements.txt > /tmp/requirements-runtime.txt \
 && pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        "torch==$(sed -n 's/^torch==//p' requirements.txt)" \
 && pip install -r /tmp/requirements-runtime.txt

COPY . .

# Static files are part of the image: collected with the production storage (content-hashed,
# compressed). The variables on this line exist only for this step; nothing connects anywhere.
RUN MMEVAL_PRODUCTION=1 SECRET_KEY=collectstatic-only-this-key-signs-nothing-0123456789 ALLOWED_HOSTS=localhost \
    DATABASE_URL=postgres://build@localhost/build STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --noinput

ENV DJANGO_SETTINGS_MODULE=mmeval.settings \
    HF_HUB_OFFLINE=1 \
    MMEVAL_PRODUCTION=1 \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/data/media \
    MMEVAL_CACHE_DIR=/data/cache

# Volumes mount here (compose.yaml); an empty named volume takes this ownership.
RUN mkdir -p /data/media /data/cache /data/beat && chown -R mmeval:mmeval /data
USER mmeval

EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "mmeval.wsgi"]
