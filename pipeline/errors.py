"""Every error the pipeline raises on purpose, under one base class.

    ClaimsError                  one line for the user, an exit code for the shell
    ├── InputError               bad input: missing, corrupt, encrypted or textless file; bad option (exit 2)
    │   └── NoTextLayerError     the PDF has no usable text (scanned, or glyph names instead of words)
    ├── ConfigError              missing API key, unknown setting (exit 2)
    ├── LLMError                 the model could not give a usable answer (exit 1)
    │   ├── LLMUnavailableError  the endpoint kept failing (429 / 5xx / timeouts) after bounded retries
    │   ├── LLMRefusalError      the model refused
    │   └── StageOutputError     the output did not validate, even after one repair request
    ├── ReplayError              a recorded run cannot be replayed or does not match (exit 1)
    │   └── ReplayMissError      a request has no recorded answer; says which stage and why
    └── StoreError               the record store refused an operation (exit 1)
        └── RecordNotFoundError  no record has that id (exit 2)

The CLI prints `str(error)` as one line and exits with `error.exit_code`; nothing else is shown,
so no traceback (and no local variable holding a key) ever reaches the terminal.
"""

from __future__ import annotations


class ClaimsError(Exception):
    exit_code = 1


class InputError(ClaimsError):
    exit_code = 2


class NoTextLayerError(InputError):
    pass


class ConfigError(ClaimsError):
    exit_code = 2


class LLMError(ClaimsError):
    pass


class LLMUnavailableError(LLMError):
    pass


class LLMRefusalError(LLMError):
    pass


class StageOutputError(LLMError):
    def __init__(self, stage: str, problems: list[str]):
        self.stage = stage
        self.problems = problems
        shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
        super().__init__(f"stage {stage}: the model's output is invalid after one repair request: {shown}")


class ReplayError(ClaimsError):
    pass


class ReplayMissError(ReplayError):
    def __init__(self, stage: str, reasons: list[str]):
        self.stage = stage
        self.reasons = reasons
        super().__init__(
            f"stage {stage}: the request no longer matches the recording: " + "; ".join(reasons)
        )


class StoreError(ClaimsError):
    pass


class RecordNotFoundError(StoreError):
    exit_code = 2
