"""Every error the pipeline raises on purpose, under one base class.

    ClaimsError                    one line for the user, an exit code for the shell (1 unless said)
    ├── InputError                 bad input: missing, corrupt, encrypted or textless file; bad option (exit 2)
    │   ├── NoTextLayerError       the PDF has no usable text (scanned, or glyph names instead of words)
    │   ├── EncryptedPdfError      the PDF needs a password
    │   ├── DoiNotFoundError       no registry knows the DOI
    │   └── InvalidEditError       a reviewer's edit breaks the schema (carries every problem)
    ├── ConfigError                missing API key, unknown setting (exit 2)
    ├── SourcesUnavailableError    Crossref and OpenAlex both failed
    ├── NoOpenAccessPdfError       no open-access PDF for the DOI (exit 3)
    ├── LLMError                   the model could not give a usable answer
    │   ├── LLMUnavailableError    the endpoint kept failing (429 / 5xx / timeouts) after bounded retries
    │   ├── LLMRefusalError        the model refused
    │   └── StageOutputError       nothing usable came back, even after a repair request
    ├── RecordSchemaError          the pipeline built a record its own schema refuses (a bug; never written)
    ├── ReplayError                a recorded run cannot be replayed or does not match
    │   └── ReplayMissError        a request has no recorded answer; says which stage and why
    ├── ReviewRefusedError         a review action the rules refuse (an unresolved flag, no reviewer)
    └── StoreError                 the record store refused an operation
        ├── StaleVersionError      the change was made on an older version than the stored one
        └── RecordNotFoundError    no record has that id (exit 2)

The CLI prints `str(error)` as one line and exits with `error.exit_code`; nothing else is shown,
so no traceback (and no local variable holding a key) ever reaches the terminal.
"""

from __future__ import annotations


class ClaimsError(Exception):
    exit_code = 1
    # True where every other paper of a batch would fail the same way: the batch stops starting them.
    stops_batch = False


class InputError(ClaimsError):
    exit_code = 2


class NoTextLayerError(InputError):
    pass


class EncryptedPdfError(InputError):
    pass


class DoiNotFoundError(InputError):
    pass


class InvalidEditError(InputError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"the edit is invalid and was not saved: {'; '.join(problems[:3])}"
            + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
        )


class ConfigError(ClaimsError):
    exit_code = 2


class EndpointRefusedError(ConfigError):
    """The model endpoint refuses every request as configured (the key, the model, the address):
    a batch stops at the first, rather than fail each of its papers the same way."""

    stops_batch = True


class BatchStoppedError(ClaimsError):
    """A batch stopped starting papers because none could succeed: the endpoint refused the
    configuration, or could not be reached at all. Running it again resumes it."""

    exit_code = 2


class SourcesUnavailableError(ClaimsError):
    pass


class NoOpenAccessPdfError(ClaimsError):
    exit_code = 3


class LLMError(ClaimsError):
    pass


class LLMUnavailableError(LLMError):
    pass


class EndpointUnreachableError(LLMUnavailableError):
    """No connection to the model endpoint in any attempt: a batch stops at the first, as no
    other paper would reach it either."""

    stops_batch = True


class LLMRefusalError(LLMError):
    pass


class StageOutputError(LLMError):
    """`hint`: what the user can do about it, where the answers say (one cut off at the token limit)."""

    def __init__(self, stage: str, problems: list[str], hint: str = ""):
        self.stage = stage
        self.problems = problems
        shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
        super().__init__(
            f"stage {stage}: the model's output is invalid after one repair request: {shown}"
            + (f"; {hint}" if hint else "")
        )


class RecordSchemaError(ClaimsError):
    pass


class ReplayError(ClaimsError):
    pass


class ReplayMissError(ReplayError):
    def __init__(self, stage: str, reasons: list[str]):
        self.stage = stage
        self.reasons = reasons
        super().__init__(f"stage {stage}: the request no longer matches the recording: " + "; ".join(reasons))


class ReviewRefusedError(ClaimsError):
    pass


class StoreError(ClaimsError):
    pass


class StaleVersionError(StoreError):
    pass


class RecordNotFoundError(StoreError):
    exit_code = 2
