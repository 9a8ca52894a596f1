"""The core: what every layer above may use and nothing in it imports from above. The data model
and its stage rules (`models`), every error class (`errors`), DOIs and citations
(`identifiers`), the record schema and its validation (`schema`), every environment variable
(`settings`), prompt files and their registry (`resources`), bounded file reads and atomic
writes (`files`), retries (`retry`), content words (`terms`), small caches (`memo`) and what a
worker process runs first (`worker`)."""
