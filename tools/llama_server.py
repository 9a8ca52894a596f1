"""Start llama-cpp-python's OpenAI-compatible server with what this kind of machine needs.

    python tools/llama_server.py --model FILE.gguf --port 8090 [server options]

Run with the local-model virtual environment's Python (`./dev local-model` makes it). It is
llama-cpp-python's own server (`python -m llama_cpp.server`), with one change no server option
offers: llama.cpp's extra weight buffer types (the AMX repacking path) are turned off, because
on some virtual CPUs that path crashes the server on its first request (a general protection
fault in ggml_backend_amx_mul_mat). Everything else is a server option: `./dev local-model`
passes `--n_ctx 8192 --logits_all false --n_threads 2` and sets OMP_WAIT_POLICY=passive.
"""

from __future__ import annotations

import llama_cpp.llama_cpp as native
from llama_cpp.server.__main__ import main

_default_model_params = native.llama_model_default_params


def _model_params_without_extra_buffer_types():  # type: ignore[no-untyped-def]
    params = _default_model_params()
    params.use_extra_bufts = False
    return params


native.llama_model_default_params = _model_params_without_extra_buffer_types

if __name__ == "__main__":
    main()
