"""Where papers come from: PDF text (`pdf`), DOI metadata and open-access PDFs (`metadata`), and
the HTTP client both use (`http`)."""
