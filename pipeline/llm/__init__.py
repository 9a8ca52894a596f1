"""The model: the one seam (`base`), the OpenAI-compatible client (`openai`), the Batch API, rate
limits, the response cache, recordings and replay, and the strict schema sent with each request."""
