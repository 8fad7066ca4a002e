#!/bin/sh
# Model contract: load /model/saved and serve /generate and /docs on port 8080.
exec substratus-ml serve --model-dir /model/saved --port 8080
