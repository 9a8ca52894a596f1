"""The model-calling stages (`extract`, `draft`, `grade`) and the faithfulness checks (`check`)."""
