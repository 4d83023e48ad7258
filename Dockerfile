# SageMaker-compatible SSD object detection (MXNet 1.9.1 + GluonCV), CPU or GPU flavour.
#
#   docker build -t ssd-sagemaker:cpu .
#   docker build -t ssd-sagemaker:gpu --build-arg FLAVOUR=gpu .
#   docker run --rm -v "$PWD/docker/local/opt_ml:/opt/ml" ssd-sagemaker:cpu train
#
# Build arguments:
#   BASE_IMAGE          a Debian/Ubuntu image whose `python3` is Python 3.11 (python:3.11-slim-bookworm;
#                       the podman test uses a debootstrapped Debian bookworm, whose python3 is 3.11).
#                       The same base is used by the builder and the final stage (the venv points at
#                       its interpreter).
#   FLAVOUR             cpu (mxnet) or gpu (mxnet-cu112 + the CUDA 11 runtime wheels from PyPI).
#   PRETRAINED_WEIGHTS  1 (default): put GluonCV's ImageNet weights of every base network in
#                       model/backbones.py (VGG-16 atrous, ResNet-50 v1) in $MXNET_HOME/models at
#                       build time (`ssd-sagemaker fetch-weights` downloads them from
#                       GluonCV's model store: needs the internet). 0: skip, for offline builds;
#                       use_pretrained_model=1 then fails with a clear message unless the files are
#                       mounted at /opt/mxnet/models. Machines that reach only package registries
#                       (this project's development and CI machines, hence its tests) must use 0.
#   PIP_INDEX_URL       the package index (a mirror or proxy), default PyPI.
#
# GPU choice: the GPU flavour shares the CPU flavour's Python 3.11 base and adds NVIDIA's CUDA 11
# runtime wheels (cudart, cuBLAS, cuFFT, cuRAND, cuSOLVER, NVRTC, NVTX, cuDNN 8, NCCL) with
# LD_LIBRARY_PATH pointing at them, instead of an nvidia/cuda:11.x base image: one Python (3.11)
# from one base in both flavours, no deadsnakes/pyenv Python on top of an Ubuntu CUDA image, and
# the CUDA libraries pinned by pip next to mxnet-cu112. The driver (libcuda.so.1) comes from the
# host through the NVIDIA container runtime, as with any CUDA image.

ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG FLAVOUR=cpu

# ---------------------------------------------------------------------------------------------
# system: the base + the two shared libraries libmxnet.so needs that no wheel brings (OpenMP
# and libquadmath); slim images lack them. Both the builder and the final image start here.
FROM ${BASE_IMAGE} AS system
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgomp1 libquadmath0 > /dev/null \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* /var/log/apt /var/log/dpkg.log

# ---------------------------------------------------------------------------------------------
# builder: a venv with the dependencies (from pyproject.toml) for the flavour, at the versions of
# the lock (constraints.txt, shared with the development venv); headless OpenCV.
FROM system AS builder
ARG FLAVOUR
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=180
RUN python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), "BASE_IMAGE must have Python 3.11, not " + sys.version' \
 && python3 -m venv /opt/venv
COPY pyproject.toml constraints.txt docker/requirements.py scripts/use_headless_opencv.sh /build/
# gluoncv requires opencv-python (the GUI build, which needs libGL/libglib that slim images lack):
# use_headless_opencv.sh leaves the headless build's cv2 in place. The test suites of numpy, scipy,
# pandas and matplotlib (about 80 MB, never imported) are left out.
RUN python3 /build/requirements.py "${FLAVOUR}" /build/pyproject.toml > /build/requirements.txt \
 && cat /build/requirements.txt \
 && pip install --quiet -c /build/constraints.txt -r /build/requirements.txt \
 && sh /build/use_headless_opencv.sh python3 \
 && pip list \
 && cd /opt/venv/lib/python3.11/site-packages \
 && find numpy scipy pandas matplotlib -depth -type d -name tests -exec rm -rf {} + \
 && du -sh /opt/venv

# ---------------------------------------------------------------------------------------------
# project: the package as a wheel (small; rebuilt alone when the source changes).
FROM builder AS project
COPY pyproject.toml README.md LICENSE /build/project/
COPY src /build/project/src
RUN pip wheel --quiet --no-deps --wheel-dir /wheels /build/project

# ---------------------------------------------------------------------------------------------
# weights: GluonCV's ImageNet weights of every backbone in model/backbones.py's registry, fetched
# by the package's own `ssd-sagemaker fetch-weights` (the one list of weights and the one
# downloader). The stage installs the package wheel, so a source change downloads them again.
FROM builder AS weights
ARG PRETRAINED_WEIGHTS=1
ENV MXNET_HOME=/opt/mxnet
COPY --from=project /wheels /tmp/wheels
RUN mkdir -p /opt/mxnet/models \
 && if [ "${PRETRAINED_WEIGHTS}" = 1 ]; then \
        pip install --quiet --no-deps --no-index /tmp/wheels/*.whl \
        && ssd-sagemaker fetch-weights; \
    else \
        echo "PRETRAINED_WEIGHTS=${PRETRAINED_WEIGHTS}: no ImageNet weights in the image"; \
    fi

# ---------------------------------------------------------------------------------------------
# final: the system stage + the venv + the weights + the package. No compilers, no pip cache.
FROM system
ARG FLAVOUR
ARG PRETRAINED_WEIGHTS=1
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      com.amazonaws.sagemaker.capabilities.multi-models=true \
      org.opencontainers.image.title="ssd-sagemaker" \
      org.opencontainers.image.description="SageMaker-compatible SSD object detection (MXNet 1.9.1 + GluonCV)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      ssd-sagemaker.flavour="${FLAVOUR}"
# The CUDA variables are in both flavours: an ENV cannot depend on a build argument, and choosing
# a final stage by `FROM runtime-${FLAVOUR}` fails in podman/buildah 4.3 unless FLAVOUR is passed
# explicitly. In the CPU image the nvidia/* folders do not exist (the loader skips them) and the
# NVIDIA_* variables only matter under the NVIDIA container runtime (GPUs the CPU build ignores).
# GPU environment (src/ssd_sagemaker/gpu_support.py has the reasons): NVRTC 11.8
# (nvidia-cuda-nvrtc-cu11 11.8.x, soname libnvrtc.so.11.2) comes first on LD_LIBRARY_PATH, so
# MXNet's pointwise fusion compiles for sm_89 (L4/L40S; CUDA 11.2's NVRTC rejects it; without it
# `train` sets MXNET_USE_FUSION=0). MXNET_CUDNN_LIB_CHECKING=0: MXNet 1.9.1 was built against
# cuDNN 8.1.1 and warns in every job about the image's 8.9.6, which it runs with. The serving
# default of MXNET_CUDNN_AUTOTUNE_DEFAULT is set by `serve` itself (serving/server.py).
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    MXNET_HOME=/opt/mxnet \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cuda_runtime/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cublas/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cufft/lib:/opt/venv/lib/python3.11/site-packages/nvidia/curand/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cusolver/lib:/opt/venv/lib/python3.11/site-packages/nvidia/nvtx/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib:/opt/venv/lib/python3.11/site-packages/nvidia/nccl/lib \
    MXNET_CUDNN_LIB_CHECKING=0 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=builder /opt/venv /opt/venv
COPY --from=weights /opt/mxnet /opt/mxnet
COPY docker/entrypoint /usr/local/bin/entrypoint
COPY --from=project /wheels /tmp/wheels
# Install the package, then prove the image works: headless cv2 (the GUI build would fail here
# for want of libGL), mxnet, gluoncv, the CLI, and the weights where promised. Importing
# mxnet-cu112 needs the driver, absent at build time: the GPU flavour checks instead that every
# library libmxnet.so links against resolves, except the driver's libcuda.so.1. Importing
# matplotlib (gluoncv does) builds its font cache once here instead of in every job.
RUN pip install --quiet --no-deps --no-index --no-cache-dir /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && chmod 0755 /usr/local/bin/entrypoint \
 && if pip show --quiet opencv-python 2>/dev/null; then echo "error: opencv-python (GUI build) is installed" >&2; exit 1; fi \
 && python -c 'import cv2; print("cv2", cv2.__version__, cv2.__file__)' \
 && ssd-sagemaker --help > /dev/null \
 && python -c 'import matplotlib.font_manager' \
 && if [ "${FLAVOUR}" = cpu ]; then \
        python -c 'import mxnet, gluoncv, ssd_sagemaker.training.trainer, ssd_sagemaker.serving.server; print("mxnet", mxnet.__version__, "gluoncv", gluoncv.__version__)' \
        && if [ "${PRETRAINED_WEIGHTS}" = 1 ]; then \
            python -c 'from ssd_sagemaker.model.backbones import BACKBONES; from ssd_sagemaker.model.network import model_cache_dir, pretrained_base_file; [print(pretrained_base_file(base, model_cache_dir())) for base in BACKBONES]'; \
        fi; \
    else \
        missing="$(ldd /opt/venv/lib/python3.11/site-packages/mxnet/libmxnet.so | grep 'not found' | grep -v 'libcuda\.so\.1' || true)" \
        && if [ -n "${missing}" ]; then echo "error: libmxnet.so misses ${missing}" >&2; exit 1; fi \
        && ldd /opt/venv/lib/python3.11/site-packages/mxnet/libmxnet.so | grep 'libnvrtc\.so\.11\.2 => .*/nvidia/cuda_nvrtc/lib/' \
        && python -c 'from ssd_sagemaker.cuda_driver import read_nvrtc; n = read_nvrtc("libnvrtc.so.11.2"); print("NVRTC", n); assert n and n.version >= (11, 8) and 89 in n.archs, n'; \
    fi
EXPOSE 8080
# dumb-init as PID 1 reaps zombies and relays signals; --single-child relays them to the job only,
# as `docker stop` does without it: the trainer catches SIGTERM and checkpoints, while its data
# loader worker processes must not be killed under it (they would be, by the default relay to
# the whole process group, and the job then hangs until SIGKILL).
ENTRYPOINT ["/opt/venv/bin/dumb-init", "--single-child", "--", "/usr/local/bin/entrypoint"]
