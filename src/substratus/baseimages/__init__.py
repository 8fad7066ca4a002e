"""`sub images build`: the offline base images the example images build FROM.

    localhost/substratus/python-base:bookworm   python:3.11-slim when it can be pulled,
                                                else Debian bookworm made here with
                                                debootstrap, plus images/base/Dockerfile
    localhost/substratus/ml-base:0.1            images/ml/Dockerfile: CPU torch,
                                                transformers, jupyterlab, substratus-ml

One implementation for every way in: `make setup` and `scripts/build-base-images.sh`
call `sub images build`, which reads the build files from the package
(`substratus.bundle`), so an installed `sub` builds the same images as a checkout.

Everything a build needs from this machine reaches it through the build context,
never through `-v` (which `docker build` lacks): the host CA bundle (for
TLS-intercepting proxies) and a local CPU torch wheel. The ml-base Dockerfile
bind-mounts the wheel from the context with `RUN --mount`, so it adds no layer.

    plan     pure decisions: what to build, what to keep, where torch comes from
    context  the temporary build contexts
    rootfs   debootstrap (needs root)
    builder  carries a plan out through the engine
"""
